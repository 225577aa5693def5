// Column sets of the stat tables (HTTP and TCP), as Linkerd's dashboard lays them out.
import { byteRate, count, meshedParts, ms, rps } from '../lib/format.js';
import { resourcePath, rowHistory } from '../lib/links.js';
import { HistoryLink, SuccessRate } from './bits.jsx';

const meshedSort = (r) => {
  const [a, b] = meshedParts(r.meshed);
  return b ? a / b + b * 1e-9 : null;
};

function nameColumn(label, link) {
  return {
    key: 'name',
    label,
    className: 'name',
    value: (r) => r.name,
    render: (r) => {
      const href = link ? link(r) : resourcePath(r.namespace, r.kind, r.name);
      return href ? (
        <a href={href} data-testid="name-link">
          {r.name}
        </a>
      ) : (
        <span class="muted">{r.name}</span>
      );
    },
  };
}

const historyColumn = {
  key: 'history',
  label: '',
  sortable: false,
  className: 'icon',
  render: (r) => (r.noHistory ? null : <HistoryLink href={rowHistory(r)} label={`History of ${r.name}`} />),
};

/** Name, Meshed, Success Rate, RPS, P50, P95, P99, history. */
export function httpColumns({ label = 'Name', link, extra = [], history = true, meshed = true } = {}) {
  return [
    nameColumn(label, link),
    ...extra,
    ...(meshed ? [{ key: 'meshed', label: 'Meshed', numeric: true, value: (r) => r.meshed || '-', sort: meshedSort }] : []),
    { key: 'success', label: 'Success Rate', numeric: true, sort: (r) => r.success, render: (r) => <SuccessRate value={r.success} /> },
    { key: 'rps', label: 'RPS', numeric: true, sort: (r) => r.rps, value: (r) => rps(r.rps) },
    { key: 'p50', label: 'P50 Latency', numeric: true, sort: (r) => r.latency_ms_p50, value: (r) => ms(r.latency_ms_p50) },
    { key: 'p95', label: 'P95 Latency', numeric: true, sort: (r) => r.latency_ms_p95, value: (r) => ms(r.latency_ms_p95) },
    { key: 'p99', label: 'P99 Latency', numeric: true, sort: (r) => r.latency_ms_p99, value: (r) => ms(r.latency_ms_p99) },
    ...(history ? [historyColumn] : []),
  ];
}

/** Name, Meshed, Connections, Read Bytes/sec, Write Bytes/sec, history. */
export function tcpColumns({ label = 'Name', link, history = true, meshed = true } = {}) {
  return [
    nameColumn(label, link),
    ...(meshed ? [{ key: 'meshed', label: 'Meshed', numeric: true, value: (r) => r.meshed || '-', sort: meshedSort }] : []),
    { key: 'conn', label: 'Connections', numeric: true, sort: (r) => r.tcp_open_connections, value: (r) => count(r.tcp_open_connections) },
    { key: 'read', label: 'Read Bytes/sec', numeric: true, sort: (r) => r.tcp_read_bytes_rate, value: (r) => byteRate(r.tcp_read_bytes_rate) },
    { key: 'write', label: 'Write Bytes/sec', numeric: true, sort: (r) => r.tcp_write_bytes_rate, value: (r) => byteRate(r.tcp_write_bytes_rate) },
    ...(history ? [historyColumn] : []),
  ];
}

export const statKey = (r) => `${r.namespace}/${r.kind}/${r.name}`;
export const statName = (r) => r.name;

/** "No traffic in the last 1m" when no row has requests. */
export function noTraffic(rows) {
  return !rows || rows.every((r) => r.rps === null || r.rps === undefined);
}
