// `/namespaces`: HTTP and TCP metrics of every namespace.
import { useMemo, useState } from 'preact/hooks';
import { ErrorBanner, Loading, Section, emptyText } from '../components/bits.jsx';
import { DataTable, FilterBox } from '../components/DataTable.jsx';
import { httpColumns, noTraffic, statKey, statName, tcpColumns } from '../components/statColumns.jsx';
import { apiUrl } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { windowStore } from '../lib/live.js';
import { useStore } from '../lib/store.js';

export function Overview() {
  const win = useStore(windowStore);
  const [filter, setFilter] = useState('');
  const { data, error, loading } = useApi(apiUrl('/api/v1/stat', { resource: 'namespace', window: win }));
  const rows = Array.isArray(data) ? data : [];
  const http = useMemo(() => httpColumns({ label: 'Namespace' }), []);
  const tcp = useMemo(() => tcpColumns({ label: 'Namespace' }), []);
  return (
    <div class="page" data-testid="page-overview">
      <div class="page-head">
        <h1>Namespaces</h1>
        <FilterBox value={filter} onInput={setFilter} placeholder="Filter namespaces" />
      </div>
      <ErrorBanner error={error} what="namespace metrics" />
      {loading ? <Loading what="namespaces" /> : null}
      {!loading && rows.length && noTraffic(rows) ? (
        <div class="banner banner-info" data-testid="no-traffic">No traffic in the last {win}</div>
      ) : null}
      <Section title="HTTP metrics" testid="section-http">
        <DataTable testid="table-http" label="HTTP metrics" columns={http} rows={rows} rowKey={statKey} rowName={statName} filter={filter} empty={emptyText({ loading, error, data }, 'No meshed namespaces')} />
      </Section>
      <Section title="TCP metrics" testid="section-tcp">
        <DataTable testid="table-tcp" label="TCP metrics" columns={tcp} rows={rows} rowKey={statKey} rowName={statName} filter={filter} empty={emptyText({ loading, error, data }, 'No meshed namespaces')} />
      </Section>
    </div>
  );
}
