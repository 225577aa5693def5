// Per-route metrics from service profiles; `[DEFAULT]` is traffic matching no route.
import { useMemo } from 'preact/hooks';
import { ms, rps } from '../lib/format.js';
import { historyPath } from '../lib/links.js';
import { DataTable } from './DataTable.jsx';
import { HistoryLink, SuccessRate } from './bits.jsx';

export function RoutesTable({ rows, empty, testid = 'table-routes' }) {
  const columns = useMemo(
    () => [
      { key: 'route', label: 'Route', className: 'path', render: (r) => <span class={r.route === '[DEFAULT]' ? 'muted' : undefined}>{r.route}</span> },
      { key: 'service', label: 'Service' },
      { key: 'success', label: 'Success Rate', numeric: true, sort: (r) => r.success, render: (r) => <SuccessRate value={r.success} /> },
      { key: 'rps', label: 'RPS', numeric: true, sort: (r) => r.rps, value: (r) => rps(r.rps) },
      { key: 'p50', label: 'P50 Latency', numeric: true, sort: (r) => r.latency_ms_p50, value: (r) => ms(r.latency_ms_p50) },
      { key: 'p95', label: 'P95 Latency', numeric: true, sort: (r) => r.latency_ms_p95, value: (r) => ms(r.latency_ms_p95) },
      { key: 'p99', label: 'P99 Latency', numeric: true, sort: (r) => r.latency_ms_p99, value: (r) => ms(r.latency_ms_p99) },
      {
        key: 'history',
        label: '',
        sortable: false,
        className: 'icon',
        render: (r) => <HistoryLink href={historyPath({ scope: 'route', namespace: r.namespace, service: r.service, route: r.route })} label={`History of ${r.route}`} />,
      },
    ],
    [],
  );
  return (
    <DataTable
      testid={testid}
      label="Routes"
      columns={columns}
      rows={rows}
      rowKey={(r) => `${r.dst}|${r.route}`}
      rowName={(r) => r.route}
      empty={empty}
    />
  );
}
