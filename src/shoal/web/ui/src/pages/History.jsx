// `/history`: charts over a time range for the mesh, a namespace, a workload, a
// service, a route, or the proxies themselves (`scope=proxies`: CPU, memory, fds).
// Presets 15m..7d, or drag across a chart to zoom (start/end go into the URL).
import { useMemo } from 'preact/hooks';
import { Chart } from '../components/Chart.jsx';
import { ErrorBanner } from '../components/bits.jsx';
import { apiUrl } from '../lib/api.js';
import { byteRate, bytes, count, dateTime } from '../lib/format.js';
import { useApi, useNow } from '../lib/hooks.js';
import { nsStore } from '../lib/live.js';
import { navigate, setQuery, useQuery } from '../lib/router.js';

const arr = (d) => (Array.isArray(d) ? d : []);
export const RANGES = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800 };
const STEPS = { '15m': 15, '1h': 30, '6h': 180, '24h': 600, '7d': 3600 };
const SCOPES = ['mesh', 'namespace', 'deployment', 'pod', 'replicaset', 'service', 'route', 'proxies'];
const SCOPE_TITLE = { mesh: 'Mesh', namespace: 'Namespace', deployment: 'Deployment', pod: 'Pod', replicaset: 'Replica set', service: 'Service', route: 'Route', proxies: 'Mesh health (proxies)' };
const LISTING = { deployment: 'deployments', pod: 'pods', replicaset: 'replicasets', service: 'services' };
const TLS_LABEL = { true: 'mTLS', no_identity: 'no identity', false: 'plaintext', '': 'plaintext' };

/** A step giving ~120 points (at least the 2s scrape interval). */
export function stepFor(start, end) {
  return Math.max(2, Math.ceil((end - start) / 120));
}

const q = (v) => `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
const sel = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k}=${q(v)}`)
    .join(',');

const fmtPct = (v) => `${(+v).toFixed(v >= 99.95 || v === 0 ? 0 : 1)}%`;
const fmtRps = (v) => (v === 0 ? '0' : Math.abs(v) >= 100 ? `${Math.round(v)}` : Math.abs(v) >= 10 ? (+v).toFixed(1) : (+v).toFixed(2)) + '/s';
const fmtMs = (v) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(v >= 10000 ? 0 : 1)}s` : Math.abs(v) >= 10 || v === 0 ? `${Math.round(v)}ms` : `${(+v).toFixed(1)}ms`);
const fmtCores = (v) => (Math.abs(v) >= 1 ? (+v).toFixed(2) : `${Math.round(v * 1000)}m`);

/** stat/series rows -> uPlot columns. */
function fromStatSeries(rows) {
  const xs = rows.map((r) => r.t);
  const col = (f) => rows.map((r) => {
    const v = f(r);
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  });
  const tlsKeys = [...new Set(rows.flatMap((r) => Object.keys(r.rps_by_tls || {})))].sort();
  return {
    xs,
    success: [{ label: 'success rate', values: col((r) => (r.success === null ? null : r.success * 100)), color: '#16a34a' }],
    rps: tlsKeys.length
      ? tlsKeys.map((k) => ({ label: TLS_LABEL[k] || k, values: col((r) => (r.rps_by_tls || {})[k]) }))
      : [{ label: 'total', values: col((r) => r.rps) }],
    latency: [
      { label: 'p50', values: col((r) => r.latency_ms_p50), color: '#16a34a' },
      { label: 'p95', values: col((r) => r.latency_ms_p95), color: '#d97706' },
      { label: 'p99', values: col((r) => r.latency_ms_p99), color: '#dc2626' },
    ],
    conns: [{ label: 'open connections', values: col((r) => r.tcp_open_connections) }],
    tcpBytes: [
      { label: 'read', values: col((r) => r.tcp_read_bytes_rate) },
      { label: 'write', values: col((r) => r.tcp_write_bytes_rate), color: '#7c3aed' },
    ],
  };
}

/** /api/v1/series answers (several) -> one set of aligned columns. */
function alignSeries(answers) {
  const ts = new Set();
  for (const a of answers) for (const s of a.series) for (const [t] of s.points) ts.add(t);
  const xs = [...ts].sort((a, b) => a - b);
  const index = new Map(xs.map((t, i) => [t, i]));
  const out = [];
  for (const a of answers) {
    for (const s of a.series) {
      const values = new Array(xs.length).fill(null);
      for (const [t, v] of s.points) values[index.get(t)] = typeof v === 'number' && Number.isFinite(v) ? v : null;
      out.push({ label: a.label(s.labels || {}), values });
    }
  }
  return { xs, series: out };
}

function seriesUrl(metric, fn, by, selector, range, extra = {}) {
  return apiUrl('/api/v1/series', { metric, fn, by, selector, start: range.start, end: range.end, step: `${range.step}s`, ...extra });
}

/** Peers over time (response rate by caller / by callee) for a scope. */
function peerQueries(scope, ns, name) {
  const who = (nsKey, nameKey) => (l) => {
    const n = l[nameKey] || '(unmeshed)';
    return l[nsKey] && l[nsKey] !== ns ? `${l[nsKey]}/${n}` : n;
  };
  const base = { direction: 'outbound' };
  const hash = (rs) => rs.slice(rs.lastIndexOf('-') + 1);
  switch (scope) {
    case 'deployment':
      return [
        { title: 'Inbound peers (requests/s by caller)', by: 'namespace,deployment', selector: sel({ ...base, dst_namespace: ns, dst_deployment: name }), label: who('namespace', 'deployment') },
        { title: 'Outbound peers (requests/s by callee)', by: 'dst_namespace,dst_deployment', selector: sel({ ...base, namespace: ns, deployment: name }), label: who('dst_namespace', 'dst_deployment') },
      ];
    case 'pod':
      return [
        { title: 'Inbound peers (requests/s by caller)', by: 'namespace,pod', selector: sel({ ...base, dst_namespace: ns, dst_pod: name }), label: who('namespace', 'pod') },
        { title: 'Outbound peers (requests/s by callee)', by: 'dst_namespace,dst_pod', selector: sel({ ...base, namespace: ns, pod: name }), label: who('dst_namespace', 'dst_pod') },
      ];
    case 'replicaset':
      return [
        { title: 'Inbound peers (requests/s by caller)', by: 'namespace,deployment', selector: sel({ ...base, dst_namespace: ns, dst_pod_template_hash: hash(name) }), label: who('namespace', 'deployment') },
        { title: 'Outbound peers (requests/s by callee)', by: 'dst_namespace,dst_deployment', selector: sel({ ...base, namespace: ns, pod_template_hash: hash(name) }), label: who('dst_namespace', 'dst_deployment') },
      ];
    case 'service':
      return [{ title: 'Inbound peers (requests/s by caller)', by: 'namespace,deployment', selector: sel({ ...base, dst_namespace: ns, dst_service: name }), label: who('namespace', 'deployment') }];
    case 'namespace':
      return [
        { title: 'Inbound peers (requests/s by caller)', by: 'namespace,deployment', selector: sel({ ...base, dst_namespace: ns }), label: who('namespace', 'deployment') },
        { title: 'Outbound peers (requests/s by callee)', by: 'dst_namespace,dst_deployment', selector: sel({ ...base, namespace: ns }), label: who('dst_namespace', 'dst_deployment') },
      ];
    case 'mesh':
      return [{ title: 'Requests/s by namespace (inbound)', by: 'namespace', selector: sel({ direction: 'inbound' }), label: (l) => l.namespace || '(none)' }];
    default:
      return [];
  }
}

function PeerChart({ p, range, onZoom }) {
  const r = useApi(seriesUrl('response_total', 'rate', p.by, p.selector, range), { live: false, keep: true });
  const { xs, series } = useMemo(() => alignSeries(r.data ? [{ series: arr(r.data.series), label: p.label }] : []), [r.data]);
  return (
    <div class="chart-cell">
      <ErrorBanner error={r.error} what={p.title} />
      <Chart title={p.title} xs={xs} series={series} range={[range.start, range.end]} fmt={fmtRps} onZoom={onZoom} empty="No peers in this time range" yMin={0} />
    </div>
  );
}

function ResourceCharts({ scope, ns, name, range, onZoom }) {
  const resource = scope === 'mesh' ? 'mesh' : scope === 'namespace' ? `namespace/${ns}` : `${scope}/${name}`;
  const url = apiUrl('/api/v1/stat/series', { resource, namespace: scope === 'mesh' ? '' : ns, start: range.start, end: range.end, step: `${range.step}s` });
  const r = useApi(url, { live: false, keep: true });
  const d = useMemo(() => fromStatSeries(arr(r.data)), [r.data]);
  const rg = [range.start, range.end];
  return (
    <>
      <ErrorBanner error={r.error} what="the history" />
      <div class="charts">
        <Chart title="Success rate" xs={d.xs} series={d.success} range={rg} fmt={fmtPct} onZoom={onZoom} yMax={100} />
        <Chart title="Request rate by TLS" xs={d.xs} series={d.rps} range={rg} fmt={fmtRps} onZoom={onZoom} yMin={0} />
        <Chart title="Latency (p50, p95, p99)" xs={d.xs} series={d.latency} range={rg} fmt={fmtMs} onZoom={onZoom} yMin={0} />
        <Chart title="TCP connections" xs={d.xs} series={d.conns} range={rg} fmt={(v) => count(v)} onZoom={onZoom} yMin={0} integer />
        <Chart title="TCP bytes/s (read, write)" xs={d.xs} series={d.tcpBytes} range={rg} fmt={byteRate} onZoom={onZoom} yMin={0} />
        {peerQueries(scope, ns, name).map((p) => (
          <PeerChart key={p.title} p={p} range={range} onZoom={onZoom} />
        ))}
      </div>
    </>
  );
}

function RouteCharts({ ns, service, route, range, onZoom }) {
  const base = { dst: `${service}.${ns}.svc.cluster.local`, rt_route: route === '[DEFAULT]' ? '' : route };
  const selector = sel(base);
  const rate = useApi(seriesUrl('route_response_total', 'rate', 'classification,direction', selector, range), { live: false, keep: true });
  const lat = {
    '0.5': useApi(seriesUrl('route_response_latency_ms', 'latency_quantile', 'direction', selector, range, { q: 0.5 }), { live: false, keep: true }),
    '0.95': useApi(seriesUrl('route_response_latency_ms', 'latency_quantile', 'direction', selector, range, { q: 0.95 }), { live: false, keep: true }),
    '0.99': useApi(seriesUrl('route_response_latency_ms', 'latency_quantile', 'direction', selector, range, { q: 0.99 }), { live: false, keep: true }),
  };
  // The server side (inbound) when the destination is meshed, else the callers' view.
  const rows = arr(rate.data && rate.data.series);
  const dir = rows.some((s) => s.labels && s.labels.direction === 'inbound') ? 'inbound' : 'outbound';
  const pick = (a) => ({ series: arr(a && a.series).filter((s) => !s.labels || !s.labels.direction || s.labels.direction === dir) });
  const rateCols = useMemo(() => alignSeries([{ ...pick(rate.data), label: (l) => l.classification || 'all' }]), [rate.data]);
  const success = useMemo(() => {
    const ok = rateCols.series.find((s) => s.label === 'success');
    const bad = rateCols.series.find((s) => s.label === 'failure');
    const values = rateCols.xs.map((_, i) => {
      const a = ok ? ok.values[i] : null;
      const b = bad ? bad.values[i] : null;
      const total = (a || 0) + (b || 0);
      return a === null && b === null ? null : total > 0 ? (100 * (a || 0)) / total : null;
    });
    return [{ label: 'success rate', values, color: '#16a34a' }];
  }, [rateCols]);
  const latency = useMemo(() => {
    const parts = Object.entries(lat).map(([qv, res]) => ({ ...pick(res.data), label: () => `p${Math.round(Number(qv) * 100)}` }));
    return alignSeries(parts);
  }, [lat['0.5'].data, lat['0.95'].data, lat['0.99'].data]);
  const rg = [range.start, range.end];
  const err = rate.error || lat['0.5'].error;
  return (
    <>
      <ErrorBanner error={err} what="the route history" />
      <div class="charts">
        <Chart title="Success rate" xs={rateCols.xs} series={success} range={rg} fmt={fmtPct} onZoom={onZoom} yMax={100} />
        <Chart title="Request rate (success, failure)" xs={rateCols.xs} series={rateCols.series} range={rg} fmt={fmtRps} onZoom={onZoom} yMin={0} />
        <Chart title="Latency (p50, p95, p99)" xs={latency.xs} series={latency.series} range={rg} fmt={fmtMs} onZoom={onZoom} yMin={0} />
      </div>
    </>
  );
}

function ProxyCharts({ ns, range, onZoom }) {
  const selector = ns ? sel({ namespace: ns }) : '';
  const defs = [
    { title: 'CPU (cores) per proxy', metric: 'process_cpu_seconds_total', fn: 'rate', fmt: fmtCores },
    { title: 'Memory (resident) per proxy', metric: 'process_resident_memory_bytes', fn: 'gauge', fmt: (v) => bytes(v) },
    { title: 'Open file descriptors per proxy', metric: 'process_open_fds', fn: 'gauge', fmt: (v) => count(v), integer: true },
  ];
  return (
    <div class="charts">
      {defs.map((d) => (
        <ProxyChart key={d.metric} d={d} selector={selector} range={range} onZoom={onZoom} />
      ))}
    </div>
  );
}

function ProxyChart({ d, selector, range, onZoom }) {
  const r = useApi(seriesUrl(d.metric, d.fn, 'namespace,pod', selector, range), { live: false, keep: true });
  const cols = useMemo(() => {
    const series = arr(r.data && r.data.series);
    // One line per proxy, named by its pod (namespace/pod when several namespaces).
    const several = new Set(series.map((s) => (s.labels || {}).namespace)).size > 1;
    const label = (l) => (several && l.namespace ? `${l.namespace}/${l.pod || '?'}` : l.pod || '?');
    return alignSeries(r.data ? [{ series, label }] : []);
  }, [r.data]);
  return (
    <div class="chart-cell">
      <ErrorBanner error={r.error} what={d.title} />
      <Chart title={d.title} xs={cols.xs} series={cols.series} range={[range.start, range.end]} fmt={d.fmt} onZoom={onZoom} yMin={0} integer={!!d.integer} />
    </div>
  );
}

function ScopeForm({ scope, ns, name, service, route }) {
  const overview = useApi('/api/v1/overview', { live: false });
  const namespaces = arr(overview.data).map((r) => r.namespace).sort();
  const kind = LISTING[scope] || (scope === 'route' ? 'services' : null);
  const listing = useApi(kind && ns ? apiUrl(`/api/v1/${kind}`, { namespace: ns }) : null, { live: false });
  const profiles = useApi(scope === 'route' && ns ? apiUrl('/api/v1/profiles', { namespace: ns }) : null, { live: false });
  const names = arr(listing.data).map((x) => x.name);
  const prof = arr(profiles.data).find((p) => p.service === service);
  const routes = [...(prof ? arr(prof.routes).map((r) => (typeof r === 'string' ? r : r.name || r.condition || JSON.stringify(r))) : []), '[DEFAULT]'];
  const withValue = (opts, v) => (v && !opts.includes(v) ? [v, ...opts] : opts);
  return (
    <div class="form-row history-form">
      <label class="field">
        <span>Scope</span>
        <select data-testid="field-scope" value={scope} onChange={(e) => setQuery({ scope: e.currentTarget.value, name: '', route: '', service: '' })}>
          {SCOPES.map((s) => (
            <option key={s} value={s}>
              {SCOPE_TITLE[s]}
            </option>
          ))}
        </select>
      </label>
      {scope !== 'mesh' ? (
        <Pick testid="field-namespace" label="Namespace" value={ns} options={withValue(namespaces, ns)} none={scope === 'proxies' ? '(all)' : 'Namespace…'} onPick={(v) => setQuery({ namespace: v, name: '', route: '', service: '' })} />
      ) : null}
      {LISTING[scope] ? <Pick testid="field-name" label={SCOPE_TITLE[scope]} value={name} options={withValue(names, name)} onPick={(v) => setQuery({ name: v })} /> : null}
      {scope === 'route' ? (
        <>
          <Pick testid="field-service" label="Service" value={service} options={withValue(names, service)} onPick={(v) => setQuery({ service: v, route: '' })} />
          <Pick testid="field-route" label="Route" value={route} options={withValue(routes, route)} onPick={(v) => setQuery({ route: v })} />
        </>
      ) : null}
    </div>
  );
}

export function History() {
  const query = useQuery();
  const scope = SCOPES.includes(query.get('scope')) ? query.get('scope') : 'mesh';
  const ns = query.get('namespace') || (scope === 'mesh' || scope === 'proxies' ? '' : nsStore.get() || '');
  const name = query.get('name') || '';
  const service = query.get('service') || '';
  const route = query.get('route') || '';
  const preset = RANGES[query.get('range')] ? query.get('range') : '1h';
  const qs = Number(query.get('start'));
  const qe = Number(query.get('end'));
  const custom = Number.isFinite(qs) && Number.isFinite(qe) && qs > 0 && qe > qs;
  const now = useNow();

  let range;
  if (custom) range = { start: Math.floor(qs), end: Math.ceil(qe), step: stepFor(qs, qe) };
  else {
    const step = STEPS[preset];
    // Aligned on the step, so the queries change (and are re-fetched) once per step.
    const end = Math.ceil(now / step) * step;
    range = { start: end - RANGES[preset], end, step };
  }
  const onZoom = (a, b) => {
    if (b - a < 10) return;
    const u = new URL(location.href);
    u.searchParams.set('start', String(a));
    u.searchParams.set('end', String(b));
    navigate(u.pathname + u.search);
  };
  const setRange = (r) => {
    const u = new URL(location.href);
    u.searchParams.set('range', r);
    u.searchParams.delete('start');
    u.searchParams.delete('end');
    navigate(u.pathname + u.search);
  };

  const needs = scope === 'route' ? (!ns ? 'a namespace' : !service ? 'a service' : !route ? 'a route' : null) : LISTING[scope] ? (!ns ? 'a namespace' : !name ? `a ${scope}` : null) : scope === 'namespace' && !ns ? 'a namespace' : null;
  const subject =
    scope === 'mesh' ? 'the whole mesh' : scope === 'proxies' ? (ns ? `proxies in ${ns}` : 'all proxies') : scope === 'namespace' ? ns : scope === 'route' ? `${route} on ${service}.${ns}` : `${ns}/${name}`;

  return (
    <div class="page" data-testid="page-history" data-scope={scope}>
      <div class="page-head">
        <h1>{scope === 'proxies' ? 'Mesh health' : 'History'}</h1>
        <span class="muted">{needs ? '' : subject}</span>
      </div>
      <div class="card history-controls">
        <ScopeForm scope={scope} ns={ns} name={name} service={service} route={route} />
        <div class="range-row">
          <div class="btn-group" role="group" aria-label="Time range">
            {Object.keys(RANGES).map((r) => (
              <button type="button" key={r} class={!custom && preset === r ? 'btn btn-seg active' : 'btn btn-seg'} data-testid={`range-${r}`} aria-pressed={!custom && preset === r} onClick={() => setRange(r)}>
                {r}
              </button>
            ))}
          </div>
          <span class="range-text" data-testid="range-text" data-start={range.start} data-end={range.end} data-step={range.step}>
            {custom ? `${dateTime(range.start)} → ${dateTime(range.end)}` : `last ${preset}`} · step {range.step}s
          </span>
          {custom ? (
            <button type="button" class="btn btn-ghost" data-testid="zoom-reset" onClick={() => setRange(preset)}>
              Reset zoom
            </button>
          ) : (
            <span class="muted small">Drag across a chart to zoom.</span>
          )}
        </div>
      </div>
      {needs ? (
        <div class="banner banner-muted" data-testid="history-hint">
          Pick {needs} to see its history.
        </div>
      ) : scope === 'proxies' ? (
        <ProxyCharts ns={ns} range={range} onZoom={onZoom} />
      ) : scope === 'route' ? (
        <RouteCharts ns={ns} service={service} route={route} range={range} onZoom={onZoom} />
      ) : (
        <ResourceCharts key={`${scope}/${ns}/${name}`} scope={scope} ns={ns} name={name} range={range} onZoom={onZoom} />
      )}
    </div>
  );
}

/** A labelled select of plain string options, with an empty first choice. */
function Pick({ testid, label, value, options, none = 'Pick…', onPick }) {
  return (
    <label class="field">
      <span>{label}</span>
      <select data-testid={testid} value={value} onChange={(e) => onPick(e.currentTarget.value)}>
        <option value="">{none}</option>
        {options.map((n) => (
          <option key={n} value={n}>
            {n}
          </option>
        ))}
      </select>
    </label>
  );
}
