// Numbers as the CLI prints them: 100.00%, 5.8rps, 9ms, 1.2kB/s; `-` for no data.

export const dash = '-';
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

export function pct(v) {
  return isNum(v) ? `${(v * 100).toFixed(2)}%` : dash;
}

export function rps(v) {
  return isNum(v) ? `${v.toFixed(1)}rps` : dash;
}

export function ms(v) {
  if (!isNum(v)) return dash;
  return `${Math.round(v)}ms`;
}

export function count(v) {
  return isNum(v) ? String(Math.round(v)) : dash;
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];
export function bytes(v, suffix = '') {
  if (!isNum(v)) return dash;
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1000 && i < UNITS.length - 1) {
    x /= 1000;
    i += 1;
  }
  return `${x.toFixed(1)}${UNITS[i]}${suffix}`;
}

export const byteRate = (v) => bytes(v, '/s');

/** Go's rounded durations, as `shoal top` prints them: 947µs, 6ms, 1.5s. */
export function micros(us) {
  if (!isNum(us)) return dash;
  if (us < 1000) return `${Math.round(us)}µs`;
  const m = Math.round(us / 1000);
  if (m < 1000) return `${m}ms`;
  return `${+(m / 1000).toFixed(3)}s`;
}

/** Success-rate band: good (>= 95%), warning (90-95%), poor (< 90%), none (no data). */
export function band(v) {
  if (!isNum(v)) return 'none';
  if (v >= 0.95) return 'good';
  if (v >= 0.9) return 'warning';
  return 'poor';
}

export function duration(seconds) {
  if (!isNum(seconds)) return dash;
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${m}m`;
  if (m) return `${m}m${s % 60}s`;
  return `${s}s`;
}

export function dateTime(unix) {
  if (!isNum(unix)) return dash;
  return new Date(unix * 1000).toLocaleString();
}

/** "2/3" -> [2, 3] */
export function meshedParts(m) {
  const [a, b] = String(m || '').split('/').map(Number);
  return [Number.isFinite(a) ? a : 0, Number.isFinite(b) ? b : 0];
}

export const SHORT = { deployment: 'deploy', replicaset: 'rs', pod: 'po', service: 'svc', namespace: 'ns' };
export const PLURAL = { deployment: 'deployments', replicaset: 'replicasets', pod: 'pods', service: 'services' };
export const SINGULAR = { deployments: 'deployment', replicasets: 'replicaset', pods: 'pod', services: 'service' };
export const TITLE = { deployment: 'Deployment', replicaset: 'Replica Set', pod: 'Pod', service: 'Service', namespace: 'Namespace' };
