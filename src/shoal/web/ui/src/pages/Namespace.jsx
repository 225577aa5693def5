// `/namespaces/:ns`: the topology graph, then deployments, pods, replica sets,
// services and TCP tables.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ErrorBanner, HistoryLink, Section, emptyText } from '../components/bits.jsx';
import { DataTable, FilterBox } from '../components/DataTable.jsx';
import { Graph, TipList } from '../components/Graph.jsx';
import { httpColumns, noTraffic, statKey, statName, tcpColumns } from '../components/statColumns.jsx';
import { tipItems, topologyElements } from '../components/topology.js';
import { apiUrl } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { pickNamespace, windowStore } from '../lib/live.js';
import { historyPath, resourcePath } from '../lib/links.js';
import { scrollToHash, useLocation } from '../lib/router.js';
import { useStore } from '../lib/store.js';

const arr = (d) => (Array.isArray(d) ? d : []);

function statUrl(resource, ns, win) {
  return apiUrl('/api/v1/stat', { resource, namespace: ns, window: win });
}

/** Replica sets from the registry joined with their stats; old empty ones are kept. */
export function replicaSetRows(ns, listing, stats) {
  const byName = new Map(arr(stats).map((r) => [r.name, r]));
  const out = [];
  const seen = new Set();
  for (const rs of arr(listing)) {
    if (rs.namespace && rs.namespace !== ns) continue;
    seen.add(rs.name);
    const s = byName.get(rs.name) || { namespace: ns, kind: 'replicaset', name: rs.name, success: null, rps: null, latency_ms_p50: null, latency_ms_p95: null, latency_ms_p99: null, meshed: `0/${rs.replicas ?? 0}` };
    out.push({ ...s, namespace: ns, kind: 'replicaset', replicas: rs.replicas ?? null, deployment: rs.deployment, old: !rs.replicas });
  }
  for (const s of arr(stats)) if (!seen.has(s.name)) out.push({ ...s, old: false });
  return out;
}

export function Namespace({ ns }) {
  const win = useStore(windowStore);
  const [filter, setFilter] = useState('');
  const loc = useLocation();
  useEffect(() => pickNamespace(ns), [ns]);

  const deps = useApi(statUrl('deployment', ns, win));
  const edges = useApi(apiUrl('/api/v1/edges', { resource: 'deployment', namespace: ns, window: win }));
  const pods = useApi(statUrl('pod', ns, win));
  const rss = useApi(statUrl('replicaset', ns, win));
  const rsList = useApi(apiUrl('/api/v1/replicasets', { namespace: ns }));
  const svcs = useApi(statUrl('service', ns, win));

  const depRows = arr(deps.data);
  const graph = useMemo(() => topologyElements(ns, depRows, arr(edges.data)), [ns, deps.data, edges.data]);
  const rsRows = useMemo(() => replicaSetRows(ns, rsList.data, rss.data), [ns, rsList.data, rss.data]);

  const cols = useMemo(
    () => ({
      dep: httpColumns({ label: 'Deployment' }),
      pod: httpColumns({
        label: 'Pod',
        extra: [{ key: 'status', label: 'Status', value: (r) => r.status || '-' }],
      }),
      rs: httpColumns({
        label: 'Replica Set',
        link: (r) => (r.old ? null : resourcePath(r.namespace, 'replicaset', r.name)),
        extra: [{ key: 'state', label: 'Pods', numeric: true, value: (r) => (r.old ? 'old, no pods' : r.replicas ?? '-'), sort: (r) => r.replicas }],
      }),
      svc: httpColumns({ label: 'Service' }),
      tcp: tcpColumns({ label: 'Deployment' }),
    }),
    [],
  );

  // Land on #pods etc. once the tables are there.
  const scrolled = useRef('');
  const loaded = deps.data !== undefined && pods.data !== undefined;
  useEffect(() => {
    if (loaded && loc.hash && scrolled.current !== loc.hash) {
      if (scrollToHash(loc.hash)) scrolled.current = loc.hash;
    }
  }, [loaded, loc.hash]);

  const err = deps.error || edges.error || pods.error || rss.error || svcs.error || rsList.error;
  const quiet = deps.data !== undefined && noTraffic(depRows);
  const emptyMsg = (what, r) => emptyText(r, `No ${what} in ${ns}`);
  return (
    <div class="page" data-testid="page-namespace">
      <div class="page-head">
        <h1>
          Namespace: <span class="mono">{ns}</span>
        </h1>
        <HistoryLink href={historyPath({ scope: 'namespace', namespace: ns })} label={`History of ${ns}`} />
        <div class="grow" />
        <FilterBox value={filter} onInput={setFilter} />
      </div>
      <ErrorBanner error={err} />
      {quiet && depRows.length ? (
        <div class="banner banner-info" data-testid="no-traffic">No traffic in the last {win}</div>
      ) : null}
      <Section title="Topology" testid="section-topology">
        <Graph
          testid="topology"
          name="topology"
          nodes={graph.nodes}
          edges={graph.edges}
          layout="dagre"
          empty={emptyText(deps, `No meshed deployments in ${ns}`)}
          tooltip={(h) => {
            const t = tipItems(h);
            return <TipList title={t.title} items={t.items} />;
          }}
        />
        <p class="legend">
          <span class="lg lg-secured">mTLS (solid, square at the caller)</span>
          <span class="lg lg-unsecured">not secured (dashed)</span>
          <span class="lg lg-failing">success &lt; 90%</span>
          <span class="muted">Click a deployment to open it; click the background to enable zoom.</span>
        </p>
      </Section>
      <Section id="deployments" title="Deployments" testid="section-deployments">
        <DataTable testid="table-deployments" label="Deployments" columns={cols.dep} rows={depRows} rowKey={statKey} rowName={statName} filter={filter} empty={emptyMsg('deployments', deps)} />
      </Section>
      <Section id="pods" title="Pods" testid="section-pods">
        <DataTable testid="table-pods" label="Pods" columns={cols.pod} rows={arr(pods.data)} rowKey={statKey} rowName={statName} filter={filter} empty={emptyMsg('pods', pods)} />
      </Section>
      <Section id="replicasets" title="Replica Sets" testid="section-replicasets">
        <DataTable
          testid="table-replicasets"
          label="Replica Sets"
          columns={cols.rs}
          rows={rsRows}
          rowKey={statKey}
          rowName={statName}
          filter={filter}
          rowClass={(r) => (r.old ? 'old' : undefined)}
          empty={emptyMsg('replica sets', rss)}
        />
      </Section>
      <Section id="services" title="Services" testid="section-services">
        <DataTable testid="table-services" label="Services" columns={cols.svc} rows={arr(svcs.data)} rowKey={statKey} rowName={statName} filter={filter} empty={emptyMsg('services', svcs)} />
      </Section>
      <Section id="tcp" title="TCP" testid="section-tcp">
        <DataTable testid="table-tcp" label="TCP" columns={cols.tcp} rows={depRows} rowKey={statKey} rowName={statName} filter={filter} empty={emptyMsg('deployments', deps)} />
      </Section>
    </div>
  );
}
