// `/routes`: per-route metrics of a resource (optionally of its calls to another one),
// and a service-profile template to download when the service has none.
import { useEffect, useMemo } from 'preact/hooks';
import { ErrorBanner } from '../components/bits.jsx';
import { RoutesTable } from '../components/RoutesTable.jsx';
import { apiUrl } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { nsStore, windowStore } from '../lib/live.js';
import { setQuery, useQuery } from '../lib/router.js';
import { useStore } from '../lib/store.js';
import { shellQuote } from '../lib/tap.js';

const arr = (d) => (Array.isArray(d) ? d : []);

function options(deps, svcs) {
  return [...arr(deps).map((d) => `deploy/${d.name}`), ...arr(svcs).map((s) => `svc/${s.name}`)];
}

/** The service a routes query is about: the `to` resource's, else the resource's. */
function serviceOf(res, services) {
  if (!res) return null;
  const [type, name] = res.split('/');
  if (type === 'svc' || type === 'service') return name;
  const s = arr(services).find((x) => x.deployment === name);
  return s ? s.name : null;
}

function Pick({ name, label, value, opts, onChange, placeholder }) {
  const all = value && !opts.includes(value) ? [value, ...opts] : opts;
  return (
    <label class="field">
      <span>{label}</span>
      <select name={name} data-testid={`field-${name}`} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">{placeholder}</option>
        {all.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

export function RoutesPage() {
  const q = useQuery();
  const win = useStore(windowStore);
  const ns = q.get('namespace') || nsStore.get() || '';
  const resource = q.get('resource') || '';
  const to = q.get('to') || '';
  const toNs = q.get('to_namespace') || '';
  const dstNs = toNs || ns;
  useEffect(() => {
    if (ns && !q.get('namespace')) setQuery({ namespace: ns });
  }, [ns]);

  const overview = useApi('/api/v1/overview', { live: false });
  const deps = useApi(ns ? apiUrl('/api/v1/deployments', { namespace: ns }) : null, { live: false });
  const svcs = useApi(ns ? apiUrl('/api/v1/services', { namespace: ns }) : null, { live: false });
  const toDeps = useApi(dstNs ? apiUrl('/api/v1/deployments', { namespace: dstNs }) : null, { live: false });
  const toSvcs = useApi(dstNs ? apiUrl('/api/v1/services', { namespace: dstNs }) : null, { live: false });
  const profiles = useApi(dstNs && resource ? apiUrl('/api/v1/profiles', { namespace: dstNs }) : null);
  const routes = useApi(ns && resource ? apiUrl('/api/v1/routes', { resource, namespace: ns, window: win, to, to_namespace: to ? toNs : '' }) : null);

  const namespaces = arr(overview.data).map((r) => r.namespace).sort();
  const resOpts = useMemo(() => options(deps.data, svcs.data), [deps.data, svcs.data]);
  const toOpts = useMemo(() => options(toDeps.data, toSvcs.data), [toDeps.data, toSvcs.data]);
  const service = to ? serviceOf(to, toSvcs.data) : serviceOf(resource, svcs.data);
  const hasProfile = arr(profiles.data).some((p) => p.service === service);
  const cli = ['shoal', 'routes', resource ? shellQuote(resource) : '<resource>', '-n', shellQuote(ns || 'default')];
  if (to) cli.push('--to', shellQuote(to));
  if (to && toNs) cli.push('--to-namespace', shellQuote(toNs));

  return (
    <div class="page" data-testid="page-routes">
      <div class="page-head">
        <h1>Routes</h1>
      </div>
      <form class="card tap-form" onSubmit={(e) => e.preventDefault()}>
        <div class="form-row">
          <Pick name="namespace" label="Namespace" value={ns} opts={namespaces} placeholder="Namespace…" onChange={(v) => setQuery({ namespace: v, resource: '', to: '' })} />
          <Pick name="resource" label="Resource" value={resource} opts={resOpts} placeholder="Resource…" onChange={(v) => setQuery({ resource: v })} />
          <Pick name="to_namespace" label="To Namespace" value={toNs} opts={namespaces} placeholder="(same)" onChange={(v) => setQuery({ to_namespace: v, to: '' })} />
          <Pick name="to" label="To Resource" value={to} opts={toOpts} placeholder="(none: inbound routes)" onChange={(v) => setQuery({ to: v })} />
        </div>
        <div class="cli">
          <span class="cli-label">Current command</span>
          <code data-testid="cli">{cli.join(' ')}</code>
        </div>
      </form>
      <ErrorBanner error={routes.error} what="routes" />
      {!resource ? (
        <div class="banner banner-muted" data-testid="routes-hint">
          Pick a namespace and a resource to see its routes.
        </div>
      ) : null}
      {resource && service && profiles.data !== undefined && !hasProfile ? (
        <div class="banner banner-info" data-testid="no-profile">
          <span>
            <strong>{service}</strong> has no service profile, so all its traffic is on <code>[DEFAULT]</code>.{' '}
          </span>
          <a class="btn btn-small" data-testid="profile-template" href={apiUrl('/api/v1/profiles/template', { namespace: dstNs, service })} download={`${service}-profile.yaml`}>
            Create service profile
          </a>
        </div>
      ) : null}
      {resource ? (
        <section class="card">
          <RoutesTable rows={arr(routes.data)} empty={routes.loading ? 'Loading…' : `No route metrics in the last ${win}`} />
        </section>
      ) : null}
    </div>
  );
}
