// Builds graph elements (nodes, edges) from API rows: the namespace topology and the
// octopus of one resource.
import { band, ms, pct, rps } from '../lib/format.js';
import { resourcePath } from '../lib/links.js';

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function edgeLabel(e, compact = false) {
  const parts = [];
  if (num(e.rps) !== null) parts.push(rps(e.rps));
  if (num(e.success) !== null) parts.push(pct(e.success));
  // Big graphs: the solid line and the caller-side square say mTLS; less clutter.
  if (e.secured && !compact) parts.push('mTLS');
  return parts.join(' · ');
}

function edgeClasses(e) {
  const c = [e.secured ? 'secured' : 'unsecured'];
  if (num(e.success) !== null && e.success < 0.9) c.push('failing');
  if (num(e.rps) === null || e.rps === 0) c.push('idle');
  return c.join(' ');
}

/**
 * Namespace topology: every deployment of `ns` (from stat rows) plus the peers of
 * its edges in other namespaces; one edge per caller -> callee.
 */
export function topologyElements(ns, statRows, edgeRows) {
  const nodes = new Map();
  const stat = new Map((statRows || []).map((r) => [r.name, r]));
  const addNode = (namespace, name) => {
    const id = namespace === ns ? name : `${namespace}/${name}`;
    if (!nodes.has(id)) {
      const r = namespace === ns ? stat.get(name) : null;
      nodes.set(id, {
        id,
        label: id,
        name,
        namespace,
        band: r ? band(r.success) : 'none',
        rps: r ? r.rps : null,
        success: r ? r.success : null,
        p99: r ? r.latency_ms_p99 : null,
        meshed: r ? r.meshed : null,
        href: resourcePath(namespace, 'deployment', name),
        classes: namespace === ns ? 'link' : 'link external',
      });
    }
    return id;
  };
  for (const r of statRows || []) addNode(ns, r.name);
  const edges = [];
  const seen = new Set();
  const compact = (edgeRows || []).length > 20;
  for (const e of edgeRows || []) {
    if (!e.src || !e.dst) continue;
    const s = addNode(e.src_namespace || ns, e.src);
    const d = addNode(e.dst_namespace || ns, e.dst);
    const id = `${s}->${d}`;
    if (seen.has(id)) continue;
    seen.add(id);
    edges.push({
      id,
      source: s,
      target: d,
      srcLabel: s,
      dstLabel: d,
      label: edgeLabel(e, compact),
      rps: num(e.rps),
      success: num(e.success),
      p99: num(e.latency_ms_p99),
      secured: !!e.secured,
      reason: e.no_tls_reason || '',
      client_id: e.client_id || '',
      server_id: e.server_id || '',
      classes: edgeClasses(e),
    });
  }
  return { nodes: [...nodes.values()], edges };
}

/**
 * Octopus: the resource in the middle, its inbound neighbours (stat `to=`) on the
 * left and outbound ones (stat `from=`) on the right.
 */
export function octopusElements(center, inbound, outbound, edgeRows, edgeName) {
  const me = edgeName || center.name;
  const edgeOf = (src, srcNs, dst, dstNs) =>
    (edgeRows || []).find((e) => e.src === src && e.dst === dst && (e.src_namespace || srcNs) === srcNs && (e.dst_namespace || dstNs) === dstNs);
  const nodes = [
    {
      id: 'center',
      side: 'center',
      label: center.name,
      name: center.name,
      namespace: center.namespace,
      band: band(center.success),
      rps: center.rps ?? null,
      success: center.success ?? null,
      p99: center.latency_ms_p99 ?? null,
      meshed: center.meshed ?? null,
      classes: 'center',
    },
  ];
  const edges = [];
  const add = (r, side) => {
    const id = `${side}:${r.namespace}/${r.kind}/${r.name}`;
    const label = r.namespace === center.namespace ? r.name : `${r.namespace}/${r.name}`;
    nodes.push({
      id,
      side,
      label,
      name: r.name,
      namespace: r.namespace,
      band: band(r.success),
      rps: r.rps ?? null,
      success: r.success ?? null,
      p99: r.latency_ms_p99 ?? null,
      meshed: r.meshed ?? null,
      href: resourcePath(r.namespace, r.kind, r.name),
      classes: 'link',
    });
    const known = side === 'in' ? edgeOf(r.name, r.namespace, me, center.namespace) : edgeOf(me, center.namespace, r.name, r.namespace);
    const e = { rps: r.rps, success: r.success, secured: known ? !!known.secured : true };
    const [source, target] = side === 'in' ? [id, 'center'] : ['center', id];
    edges.push({
      id: `${source}->${target}`,
      source,
      target,
      srcLabel: side === 'in' ? label : center.name,
      dstLabel: side === 'in' ? center.name : label,
      label: edgeLabel({ ...e, secured: known ? e.secured : false }),
      rps: num(r.rps),
      success: num(r.success),
      p99: num(r.latency_ms_p99),
      secured: known ? e.secured : undefined,
      reason: known ? known.no_tls_reason || '' : '',
      client_id: known ? known.client_id || '' : undefined,
      server_id: known ? known.server_id || '' : '',
      classes: known ? edgeClasses(e) : edgeClasses(e).replace('secured', '').trim(),
    });
  };
  for (const r of inbound || []) add(r, 'in');
  for (const r of outbound || []) add(r, 'out');
  return { nodes, edges };
}

/** Tooltip rows of a hovered element. */
export function tipItems(h) {
  const d = h.data;
  if (h.group === 'edges') {
    const items = [
      ['RPS', rps(d.rps)],
      ['Success', pct(d.success)],
      ['P99', ms(d.p99)],
    ];
    if (d.secured !== undefined && d.client_id !== undefined) {
      items.push(['Secured', d.secured ? 'yes (mTLS)' : `no${d.reason ? ` (${d.reason})` : ''}`]);
      if (d.client_id) items.push(['Client', d.client_id]);
      if (d.server_id) items.push(['Server', d.server_id]);
    }
    return { title: `${d.srcLabel} → ${d.dstLabel}`, items };
  }
  return {
    title: d.label,
    items: [
      ['RPS', rps(d.rps)],
      ['Success', pct(d.success)],
      ['P99', ms(d.p99)],
      ['Meshed', d.meshed || '-'],
    ],
  };
}
