// Paths of the app's pages, built in one place.
import { PLURAL } from './format.js';

const e = encodeURIComponent;

export function resourcePath(ns, kind, name) {
  if (kind === 'namespace') return `/namespaces/${e(name)}`;
  return `/namespaces/${e(ns)}/${PLURAL[kind] || kind}/${e(name)}`;
}

export function historyPath(params) {
  // Built by hand: one per table row, URLSearchParams is slow in bulk.
  let q = '';
  for (const k in params) {
    const v = params[k];
    if (v !== undefined && v !== null && v !== '') q += `${q ? '&' : ''}${k}=${e(v)}`;
  }
  return `/history?${q}`;
}

/** The history page of a stat row (namespace, deployment, pod, replicaset, service). */
export function rowHistory(row) {
  if (row.kind === 'namespace') return historyPath({ scope: 'namespace', namespace: row.name });
  return historyPath({ scope: row.kind, namespace: row.namespace, name: row.name });
}
