// `/namespaces/:ns/:kind/:name`: one deployment, pod, replica set or service: its
// neighbours (octopus graph), live calls, routes, inbound/outbound, pods, TCP and edges.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Chip, ErrorBanner, HistoryLink, Section, SuccessRate, emptyText } from '../components/bits.jsx';
import { DataTable } from '../components/DataTable.jsx';
import { Graph, TipList } from '../components/Graph.jsx';
import { RoutesTable } from '../components/RoutesTable.jsx';
import { httpColumns, statKey, statName, tcpColumns } from '../components/statColumns.jsx';
import { TapStatus } from '../components/TapForm.jsx';
import { octopusElements, tipItems } from '../components/topology.js';
import { TopTable } from '../components/TopTable.jsx';
import { apiUrl } from '../lib/api.js';
import { SHORT, TITLE, meshedParts, rps } from '../lib/format.js';
import { useApi } from '../lib/hooks.js';
import { pickNamespace, windowStore } from '../lib/live.js';
import { historyPath } from '../lib/links.js';
import { useStore } from '../lib/store.js';
import { TopModel, useTap, useThrottledVersion } from '../lib/tap.js';

const arr = (d) => (Array.isArray(d) ? d : []);

function reasonText(r) {
  return (r || 'unknown')
    .replace(/-/g, '_')
    .split('_')
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
}

const EDGE_COLUMNS = [
  { key: 'src', label: 'Source', value: (e) => (e.src_namespace && e.src_namespace !== e.dst_namespace ? `${e.src_namespace}/${e.src}` : e.src) },
  { key: 'dst', label: 'Destination', value: (e) => (e.dst_namespace && e.dst_namespace !== e.src_namespace ? `${e.dst_namespace}/${e.dst}` : e.dst) },
  { key: 'client_id', label: 'Client identity', className: 'ident' },
  { key: 'server_id', label: 'Server identity', className: 'ident' },
  {
    key: 'secured',
    label: 'Secured',
    sort: (e) => (e.secured ? 1 : 0),
    render: (e) =>
      e.secured ? (
        <span class="ok" data-secured="true" title="mTLS">
          ✓ mTLS
        </span>
      ) : (
        <span class="warn" data-secured="false">
          {reasonText(e.no_tls_reason)}
        </span>
      ),
  },
];

function LiveCalls({ ns, kind, name, tappable }) {
  const resource = `${SHORT[kind]}/${name}`;
  const query = useMemo(() => ({ namespace: ns, resource }), [ns, resource]);
  // Starts by itself (as Linkerd's does) once the resource is known to have pods.
  const [running, setRunning] = useState(false);
  const auto = useRef(false);
  useEffect(() => {
    if (tappable && !auto.current) {
      auto.current = true;
      setRunning(true);
    }
  }, [tappable]);
  const model = useRef(new TopModel());
  const [, dirty] = useThrottledVersion(500);
  const st = useTap(query, running, (ev) => {
    model.current.add(ev);
    dirty();
  });
  useEffect(() => {
    if (st.state === 'stopped') setRunning(false);
  }, [st.state]);
  return (
    <div data-testid="live-calls">
      <div class="toolbar">
        {running ? (
          <button type="button" class="btn btn-stop" data-testid="stop" onClick={() => setRunning(false)}>
            Stop
          </button>
        ) : (
          <button
            type="button"
            class="btn btn-primary"
            data-testid="start"
            onClick={() => {
              model.current = new TopModel();
              setRunning(true);
            }}
          >
            Start
          </button>
        )}
        <code class="cli-inline" data-testid="cli">{`shoal top ${resource} -n ${ns}`}</code>
      </div>
      <TapStatus st={st} idle={tappable === false ? 'No running pods to tap.' : auto.current ? 'Stopped.' : 'Starting…'} />
      <div class="live-table">
        <TopTable rows={model.current.rows()} base={query} testid="table-live" empty={running ? 'Waiting for requests…' : 'Not running.'} />
      </div>
    </div>
  );
}

function RouteMetrics({ ns, kind, name, win }) {
  const { data, error, loading } = useApi(apiUrl('/api/v1/routes', { resource: `${kind}/${name}`, namespace: ns, window: win }));
  return (
    <div data-testid="route-metrics">
      <ErrorBanner error={error} what="routes" />
      <RoutesTable rows={arr(data)} empty={emptyText({ loading, error, data }, `No route metrics in the last ${win}`)} />
    </div>
  );
}

export function Resource({ ns, kind, name }) {
  const win = useStore(windowStore);
  const [tab, setTab] = useState('live');
  useEffect(() => pickNamespace(ns), [ns]);
  const ref = `${kind}/${name}`;
  const nk = kind === 'service' ? 'deployment' : kind;

  const self = useApi(apiUrl('/api/v1/stat', { resource: ref, namespace: ns, window: win }));
  const inbound = useApi(apiUrl('/api/v1/stat', { resource: nk, to: ref, to_namespace: ns, window: win }));
  const outbound = useApi(kind === 'service' ? null : apiUrl('/api/v1/stat', { resource: nk, from: ref, from_namespace: ns, window: win }));
  const services = useApi(kind === 'service' ? apiUrl('/api/v1/services', { namespace: ns }) : null, { live: false });
  const podList = useApi(kind === 'pod' ? null : apiUrl('/api/v1/pods', { namespace: ns }));
  const podStats = useApi(kind === 'pod' ? null : apiUrl('/api/v1/stat', { resource: 'pod', namespace: ns, window: win }));
  const edges = useApi(apiUrl('/api/v1/edges', { resource: nk, namespace: ns, window: win }));

  const svc = kind === 'service' ? arr(services.data).find((s) => s.name === name) : null;
  const edgeName = kind === 'service' ? svc && svc.deployment : name;
  const row = arr(self.data).find((r) => r.name === name) || arr(self.data)[0] || null;
  const center = row || { namespace: ns, kind, name, success: null, rps: null, meshed: null };

  const myPods = useMemo(() => {
    if (kind === 'pod') return [];
    const names = new Set(
      arr(podList.data)
        .filter((p) => (kind === 'deployment' ? p.deployment === name : kind === 'replicaset' ? p.replicaset === name : svc && p.deployment === svc.deployment))
        .map((p) => p.name),
    );
    return arr(podStats.data).filter((r) => names.has(r.name));
  }, [kind, name, podList.data, podStats.data, svc]);

  const myEdges = useMemo(
    () => arr(edges.data).filter((e) => edgeName && ((e.src === edgeName && (e.src_namespace || ns) === ns) || (e.dst === edgeName && (e.dst_namespace || ns) === ns))),
    [edges.data, edgeName, ns],
  );
  const graph = useMemo(() => octopusElements(center, arr(inbound.data), arr(outbound.data), arr(edges.data), edgeName), [self.data, inbound.data, outbound.data, edges.data, edgeName]);

  const cols = useMemo(
    () => ({
      http: httpColumns({ label: TITLE[nk] }),
      pods: httpColumns({ label: 'Pod', extra: [{ key: 'status', label: 'Status', value: (r) => r.status || '-' }] }),
      tcp: tcpColumns({ label: 'Name' }),
    }),
    [nk],
  );

  const [meshed, total] = meshedParts(center.meshed);
  const noTraffic = self.data !== undefined && (center.rps === null || center.rps === undefined);
  const err = self.error || inbound.error || outbound.error || edges.error || podStats.error || podList.error;
  const tcpRows = row ? [row, ...myPods] : myPods;
  return (
    <div class="page" data-testid="page-resource" data-kind={kind} data-name={name}>
      <div class="page-head">
        <h1>
          {TITLE[kind]}: <span class="mono">{name}</span>
        </h1>
        <div class="chips">
          {center.meshed ? (
            <Chip kind={total && meshed === total ? 'good' : 'warning'} testid="chip-meshed" title="meshed pods / pods">
              Meshed {center.meshed}
            </Chip>
          ) : null}
          {noTraffic ? (
            <Chip kind="neutral" testid="chip-no-traffic">
              No Traffic
            </Chip>
          ) : null}
          {row && row.status ? <Chip kind={row.status === 'Running' ? 'good' : 'warning'}>{row.status}</Chip> : null}
          {row && !noTraffic ? (
            <Chip kind="plain">
              <SuccessRate value={row.success} /> · {rps(row.rps)}
            </Chip>
          ) : null}
        </div>
        <div class="grow" />
        <HistoryLink href={historyPath({ scope: kind, namespace: ns, name })} label={`History of ${name}`} />
        <a href={historyPath({ scope: kind, namespace: ns, name })} class="small">
          History
        </a>
      </div>
      <ErrorBanner error={err} />
      {self.data !== undefined && !row ? (
        <div class="banner banner-info" data-testid="resource-missing">
          There is no {TITLE[kind].toLowerCase()} named “{name}” in {ns} with metrics in the last {win}: it may have been deleted.
        </div>
      ) : null}
      <Section title="Traffic" testid="section-octopus">
        <Graph
          testid="octopus"
          name="octopus"
          nodes={graph.nodes}
          edges={graph.edges}
          layout="octopus"
          empty="Loading…"
          tooltip={(h) => {
            const t = tipItems(h);
            return <TipList title={t.title} items={t.items} />;
          }}
        />
        {self.data !== undefined && !arr(inbound.data).length && !arr(outbound.data).length ? (
          <p class="muted small graph-note" data-testid="no-neighbours">
            No meshed inbound or outbound traffic in the last {win}.
          </p>
        ) : null}
      </Section>
      <section class="card">
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={tab === 'live'} class={tab === 'live' ? 'tab active' : 'tab'} data-testid="tab-live" onClick={() => setTab('live')}>
            Live Calls
          </button>
          <button type="button" role="tab" aria-selected={tab === 'routes'} class={tab === 'routes' ? 'tab active' : 'tab'} data-testid="tab-routes" onClick={() => setTab('routes')}>
            Route Metrics
          </button>
        </div>
        <div class="card-body">
          {tab === 'live' ? <LiveCalls ns={ns} kind={kind} name={name} tappable={self.data === undefined ? undefined : !!row && meshed > 0} /> : <RouteMetrics ns={ns} kind={kind} name={name} win={win} />}
        </div>
      </section>
      <Section title="Inbound" testid="section-inbound">
        <DataTable testid="table-inbound" label="Inbound" columns={cols.http} rows={arr(inbound.data)} rowKey={statKey} rowName={statName} empty={emptyText(inbound, `No inbound traffic in the last ${win}`)} />
      </Section>
      {kind !== 'service' ? (
        <Section title="Outbound" testid="section-outbound">
          <DataTable testid="table-outbound" label="Outbound" columns={cols.http} rows={arr(outbound.data)} rowKey={statKey} rowName={statName} empty={emptyText(outbound, `No outbound traffic in the last ${win}`)} />
        </Section>
      ) : null}
      {kind !== 'pod' ? (
        <Section title="Pods" testid="section-pods">
          <DataTable testid="table-pods" label="Pods" columns={cols.pods} rows={myPods} rowKey={statKey} rowName={statName} empty={emptyText(podStats, 'No pods')} />
        </Section>
      ) : null}
      <Section title="TCP" testid="section-tcp">
        <DataTable testid="table-tcp" label="TCP" columns={cols.tcp} rows={tcpRows} rowKey={statKey} rowName={statName} empty={emptyText(self, 'No TCP data')} />
      </Section>
      <Section title="Edges" testid="section-edges">
        <DataTable
          testid="table-edges"
          label="Edges"
          columns={EDGE_COLUMNS}
          rows={myEdges}
          rowKey={(e) => `${e.src_namespace}/${e.src}->${e.dst_namespace}/${e.dst}`}
          rowName={(e) => `${e.src} → ${e.dst}`}
          empty={edges.loading || edges.error ? emptyText(edges, '') : kind === 'service' && !edgeName ? 'Edges are between workloads; this service has no deployment.' : `No edges in the last ${win}`}
        />
      </Section>
    </div>
  );
}
