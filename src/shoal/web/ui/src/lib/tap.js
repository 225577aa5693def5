// Tap over server-sent events, the `top` aggregation (as `shoal top` computes it) and
// the equivalent CLI command lines.
import { useEffect, useRef, useState } from 'preact/hooks';
import { apiUrl, toLogin } from './api.js';

export const TAP_FIELDS = ['namespace', 'resource', 'to_namespace', 'to_resource', 'authority', 'path', 'scheme', 'method', 'max_rps'];
export const DEFAULT_MAX_RPS = 100;

/** The tap query from the form's values (empty fields left out). */
export function tapQuery(f) {
  const q = {};
  for (const k of TAP_FIELDS) if (f[k] !== undefined && f[k] !== null && String(f[k]).trim() !== '') q[k] = String(f[k]).trim();
  if (!q.to_resource) delete q.to_namespace;
  return q;
}

const SAFE = /^[A-Za-z0-9_/:.,=@%+-]+$/;
export function shellQuote(s) {
  s = String(s);
  return SAFE.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** `shoal top deploy/web -n ns --to deploy/x --to-namespace ns --path /api ...` */
export function cliCommand(cmd, f) {
  const q = tapQuery(f);
  const parts = ['shoal', cmd, q.resource ? shellQuote(q.resource) : '<resource>'];
  if (q.namespace) parts.push('-n', shellQuote(q.namespace));
  if (q.to_resource) parts.push('--to', shellQuote(q.to_resource));
  if (q.to_resource && q.to_namespace) parts.push('--to-namespace', shellQuote(q.to_namespace));
  for (const k of ['authority', 'path', 'scheme', 'method']) if (q[k]) parts.push(`--${k}`, shellQuote(q[k]));
  if (q.max_rps && Number(q.max_rps) !== DEFAULT_MAX_RPS) parts.push('--max-rps', shellQuote(q.max_rps));
  return parts.join(' ');
}

async function whyClosed(url, started) {
  if (started) return 'the connection to the control plane closed';
  const ctl = new AbortController();
  try {
    const res = await fetch(url, { signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
    if (res.status === 401) {
      toLogin();
      return 'not logged in';
    }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      return (body && body.error) || `${res.status} ${res.statusText}`;
    }
    ctl.abort();
    return 'the tap ended before it started';
  } catch {
    return 'cannot reach the control plane';
  }
}

/**
 * Runs a tap while `running` (and the query is complete). `onEvent` gets every
 * started/req/rsp/end event. Returns {state: idle|connecting|running|stopped, error,
 * pods, dropped, warnings}. The EventSource is closed on stop and on unmount.
 */
export function useTap(query, running, onEvent) {
  const [st, setSt] = useState({ state: 'idle', error: null, pods: [], dropped: 0, warnings: [] });
  const cb = useRef(onEvent);
  cb.current = onEvent;
  const url = query && query.resource && query.namespace ? apiUrl('/api/v1/tap/events', query) : null;

  useEffect(() => {
    if (!running || !url) {
      setSt((s) => (s.state === 'running' || s.state === 'connecting' ? { ...s, state: 'idle' } : s));
      return undefined;
    }
    let closed = false;
    let started = false;
    setSt({ state: 'connecting', error: null, pods: [], dropped: 0, warnings: [] });
    const es = new EventSource(url);
    const parse = (m) => {
      try {
        return JSON.parse(m.data);
      } catch {
        return null;
      }
    };
    es.addEventListener('started', (m) => {
      started = true;
      const d = parse(m) || {};
      setSt((s) => ({ ...s, state: 'running', pods: Array.isArray(d.pods) ? d.pods : [] }));
      cb.current({ ...d, type: 'started' });
    });
    for (const t of ['req', 'rsp', 'end']) {
      es.addEventListener(t, (m) => {
        const d = parse(m);
        if (d) cb.current({ ...d, type: t });
      });
    }
    es.addEventListener('stats', (m) => {
      const d = parse(m);
      if (d && typeof d.dropped === 'number') setSt((s) => (s.dropped === d.dropped ? s : { ...s, dropped: d.dropped }));
    });
    es.addEventListener('error', (ev) => {
      if (closed) return;
      if (ev.data) {
        // The server's own `error` event: one pod's tap failed or ended.
        const d = parse(ev) || {};
        const msg = d.pod ? `${d.pod}: ${d.error || 'tap ended'}` : d.error || 'tap failed';
        if (!d.pod) {
          closed = true;
          es.close();
          setSt((s) => ({ ...s, state: 'stopped', error: msg }));
        } else setSt((s) => ({ ...s, warnings: [...s.warnings.slice(-4), msg] }));
        return;
      }
      closed = true;
      es.close();
      whyClosed(url, started).then((msg) => setSt((s) => ({ ...s, state: 'stopped', error: s.warnings.length && started ? s.warnings[s.warnings.length - 1] : msg })));
    });
    return () => {
      closed = true;
      es.close();
    };
  }, [running, url]);
  return st;
}

/** A pod name when discovery knew it, else the address without its port. */
export function peer(labels, addr) {
  if (labels && typeof labels === 'object' && labels.pod) return String(labels.pod);
  const a = String(addr || '');
  const i = a.lastIndexOf(':');
  return (i > 0 ? a.slice(0, i) : a).replace(/^\[|\]$/g, '');
}

const PENDING_MAX = 10000;

/** Aggregation of `top`: counted when `end` arrives; latency = rsp latency + end duration. */
export class TopModel {
  constructor() {
    this.pending = new Map();
    this.table = new Map();
  }

  add(ev) {
    const id = `${ev.pod || ''}|${ev.id || ''}`;
    if (ev.type === 'req') {
      if (this.pending.size >= PENDING_MAX) this.pending.delete(this.pending.keys().next().value);
      const src = peer(ev.src_labels, ev.src);
      const dst = peer(ev.dst_labels, ev.dst);
      const method = String(ev.method || '');
      const path = String(ev.path || '');
      this.pending.set(id, { key: JSON.stringify([src, dst, method, path]), src, dst, method, path, ev, latency: 0 });
    } else if (ev.type === 'rsp') {
      const p = this.pending.get(id);
      if (p) p.latency = Number(ev.latency_us) || 0;
    } else if (ev.type === 'end') {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      const total = p.latency + (Number(ev.duration_us) || 0);
      let row = this.table.get(p.key);
      if (!row) {
        row = { key: p.key, source: p.src, destination: p.dst, method: p.method, path: p.path, count: 0, successes: 0, best: total, worst: total, last: total, direction: p.ev.direction, srcLabels: p.ev.src_labels || {}, dstLabels: p.ev.dst_labels || {} };
      } else row = { ...row };
      row.count += 1;
      if (ev.classification !== 'failure') row.successes += 1;
      row.best = Math.min(row.best, total);
      row.worst = Math.max(row.worst, total);
      row.last = total;
      this.table.set(p.key, row);
    }
  }

  rows() {
    return [...this.table.values()].sort(
      (a, b) => b.count - a.count || a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination) || a.method.localeCompare(b.method) || a.path.localeCompare(b.path),
    );
  }
}

/** Tap's list: one row per request (req, then rsp, then end merged), newest first. */
export class TapLog {
  constructor(cap = 500) {
    this.cap = cap;
    this.byId = new Map();
    this.list = [];
  }

  add(ev) {
    if (!['req', 'rsp', 'end'].includes(ev.type)) return;
    const id = `${ev.pod || ''}|${ev.id || ''}`;
    const old = this.byId.get(id);
    const row = { ...(old || { id, seq: TapLog.seq++ }), [ev.type]: ev };
    this.byId.set(id, row);
    if (old) {
      const i = this.list.indexOf(old);
      if (i >= 0) this.list[i] = row;
    } else {
      this.list.unshift(row);
      while (this.list.length > this.cap) this.byId.delete(this.list.pop().id);
    }
  }

  rows() {
    return this.list.slice();
  }
}
TapLog.seq = 0;

/** Events -> state updates at most every `ms`, whatever the event rate. */
export function useThrottledVersion(ms = 250) {
  const [version, setVersion] = useState(0);
  const dirty = useRef(false);
  useEffect(() => {
    const t = setInterval(() => {
      if (dirty.current) {
        dirty.current = false;
        setVersion((v) => v + 1);
      }
    }, ms);
    return () => clearInterval(t);
  }, [ms]);
  return [version, () => (dirty.current = true)];
}
