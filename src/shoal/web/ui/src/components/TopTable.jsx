// The live table of `top`: requests per (source, destination, method, path).
import { useMemo } from 'preact/hooks';
import { micros } from '../lib/format.js';
import { DataTable } from './DataTable.jsx';
import { SuccessRate } from './bits.jsx';

function tapLink(row, base) {
  const p = new URLSearchParams();
  p.set('namespace', base.namespace);
  p.set('resource', base.resource);
  if (base.to_resource) {
    p.set('to_resource', base.to_resource);
    if (base.to_namespace) p.set('to_namespace', base.to_namespace);
  } else if (row.direction === 'outbound' && row.dstLabels && row.dstLabels.deployment) {
    p.set('to_resource', `deploy/${row.dstLabels.deployment}`);
    if (row.dstLabels.namespace) p.set('to_namespace', row.dstLabels.namespace);
  }
  if (row.method) p.set('method', row.method);
  if (row.path) p.set('path', row.path);
  return `/tap?${p}`;
}

export function TopTable({ rows, base, empty, testid = 'table-top' }) {
  const columns = useMemo(
    () => [
      { key: 'source', label: 'Source', className: 'peer' },
      { key: 'destination', label: 'Destination', className: 'peer' },
      { key: 'method', label: 'Method' },
      { key: 'path', label: 'Path', className: 'path' },
      { key: 'count', label: 'Count', numeric: true },
      { key: 'best', label: 'Best', numeric: true, sort: (r) => r.best, value: (r) => micros(r.best) },
      { key: 'worst', label: 'Worst', numeric: true, sort: (r) => r.worst, value: (r) => micros(r.worst) },
      { key: 'last', label: 'Last', numeric: true, sort: (r) => r.last, value: (r) => micros(r.last) },
      {
        key: 'sr',
        label: 'Success Rate',
        numeric: true,
        sort: (r) => (r.count ? r.successes / r.count : null),
        render: (r) => <SuccessRate value={r.count ? r.successes / r.count : null} />,
        title: 'successes / requests',
      },
      {
        key: 'tap',
        label: 'Tap',
        sortable: false,
        className: 'icon',
        render: (r) => (
          <a class="icon-link icon-tap" href={tapLink(r, base)} title={`Tap ${r.method} ${r.path}`} aria-label="Tap these requests" data-testid="tap-link" />
        ),
      },
    ],
    [base.namespace, base.resource, base.to_resource, base.to_namespace],
  );
  return <DataTable testid={testid} label="Live calls" columns={columns} rows={rows} rowKey={(r) => r.key} rowName={(r) => r.path} empty={empty} />;
}

