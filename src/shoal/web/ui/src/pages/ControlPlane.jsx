// `/controlplane`: components and their health, the installation summary, meshed
// namespaces, and `shoal check` on demand.
import { useMemo, useState } from 'preact/hooks';
import { Dot, ErrorBanner, Loading, Section } from '../components/bits.jsx';
import { DataTable } from '../components/DataTable.jsx';
import { api } from '../lib/api.js';
import { dateTime, duration } from '../lib/format.js';
import { useApi } from '../lib/hooks.js';

const arr = (d) => (Array.isArray(d) ? d : []);
const MARK = { success: '√', warning: '‼', error: '×' };

function CheckResults({ result }) {
  return (
    <div class="checks" data-testid="check-results">
      {result.map((cat, i) => (
        <div key={i} class="check-cat" data-testid="check-category">
          <h3>{cat.categoryName}</h3>
          <ul>
            {arr(cat.checks).map((c, j) => (
              <li key={j} class={`check check-${c.result}`} data-testid="check" data-result={c.result}>
                <span class="mark" aria-label={c.result}>
                  {MARK[c.result] || '?'}
                </span>
                <span>{c.description}</span>
                {c.error ? <div class="check-msg">{c.error}</div> : null}
                {c.hint ? <div class="check-hint">see {c.hint}</div> : null}
              </li>
            ))}
          </ul>
        </div>
      ))}
      {!result.length ? <div class="muted">No checks returned.</div> : null}
    </div>
  );
}

export function ControlPlane() {
  const health = useApi('/api/v1/health');
  const targets = useApi('/api/v1/metrics/targets');
  const overview = useApi('/api/v1/overview');
  const identity = useApi('/api/v1/identity', { live: false });
  const [check, setCheck] = useState({ running: false, result: null, error: null });

  const runCheck = () => {
    setCheck({ running: true, result: null, error: null });
    api('/api/v1/check').then(
      (r) => setCheck({ running: false, result: arr(r), error: null }),
      (e) => setCheck({ running: false, result: null, error: e }),
    );
  };

  const h = health.data;
  const t = targets.data;
  const tlist = t ? arr(t.targets) : [];
  const healthyTargets = tlist.filter((x) => x.healthy).length;
  const nsColumns = useMemo(
    () => [
      { key: 'namespace', label: 'Namespace', render: (r) => <a href={`/namespaces/${encodeURIComponent(r.namespace)}`}>{r.namespace}</a> },
      {
        key: 'meshed',
        label: 'Meshed pods',
        sort: (r) => (r.pods ? r.meshed / r.pods : null),
        render: (r) => {
          const f = r.pods ? r.meshed / r.pods : 0;
          return (
            <div class="meshbar" title={`${r.meshed} of ${r.pods} pods meshed`}>
              <div class="meshbar-track">
                <div class={`meshbar-fill ${f >= 1 ? 'full' : ''}`} style={{ width: `${Math.round(f * 100)}%` }} />
              </div>
              <span class="num">
                {r.meshed}/{r.pods}
              </span>
            </div>
          );
        },
      },
      { key: 'deployments', label: 'Deployments', numeric: true },
      { key: 'services', label: 'Services', numeric: true },
    ],
    [],
  );
  const id = identity.data;

  return (
    <div class="page" data-testid="page-controlplane">
      <div class="page-head">
        <h1>Control Plane</h1>
      </div>
      <ErrorBanner error={health.error || targets.error || overview.error} />
      <div class="grid-2">
        <Section title="Components" testid="section-components">
          {!h ? (
            <Loading what="health" />
          ) : (
            <ul class="components">
              {arr(h.components).map((c) => (
                <li key={c.name} data-testid="component" data-name={c.name} data-healthy={c.healthy ? 'true' : 'false'}>
                  <Dot ok={c.healthy} warn={!c.enabled} />
                  <span class="comp-name">{c.name}</span>
                  <span class="comp-msg">{c.enabled ? c.message : `disabled: ${c.message}`}</span>
                </li>
              ))}
            </ul>
          )}
        </Section>
        <Section title="Summary" testid="section-summary">
          <dl class="summary">
            <div>
              <dt>Version</dt>
              <dd data-testid="cp-version">{h ? h.version : '-'}</dd>
            </div>
            <div>
              <dt>Status</dt>
              <dd>{h ? (h.healthy ? 'healthy' : 'unhealthy') : '-'}</dd>
            </div>
            <div>
              <dt>Uptime</dt>
              <dd>{h ? duration(h.uptime) : '-'}</dd>
            </div>
            <div>
              <dt>Proxies</dt>
              <dd data-testid="cp-proxies">{h && h.pods ? `${h.pods.ready} ready / ${h.pods.total}` : '-'}</dd>
            </div>
            <div>
              <dt>Scrape targets</dt>
              <dd data-testid="cp-targets">{t ? `${healthyTargets}/${tlist.length} healthy` : '-'}</dd>
            </div>
            <div>
              <dt>Metrics backend</dt>
              <dd>{t ? `${t.backend || '-'}${t.scrape_interval ? `, every ${t.scrape_interval}s` : ''}` : '-'}</dd>
            </div>
            <div>
              <dt>Namespaces</dt>
              <dd>{overview.data ? arr(overview.data).length : '-'}</dd>
            </div>
            <div>
              <dt>Issuer expires</dt>
              <dd>{id && id.issuer ? dateTime(id.issuer.not_after) : '-'}</dd>
            </div>
            <div>
              <dt>Trust anchors</dt>
              <dd>{id ? arr(id.trust_anchors).length : '-'}</dd>
            </div>
          </dl>
        </Section>
      </div>
      <Section title="Namespaces" testid="section-namespaces">
        <DataTable testid="table-namespaces" label="Namespaces" columns={nsColumns} rows={arr(overview.data)} rowKey={(r) => r.namespace} rowName={(r) => r.namespace} empty={overview.loading ? 'Loading…' : 'No namespaces'} />
      </Section>
      {tlist.some((x) => !x.healthy) ? (
        <Section title="Failing scrape targets" testid="section-targets">
          <ul class="components">
            {tlist
              .filter((x) => !x.healthy)
              .map((x) => (
                <li key={x.target}>
                  <Dot ok={false} />
                  <span class="comp-name">{x.target}</span>
                  <span class="comp-msg">{x.last_error || 'failing'}</span>
                </li>
              ))}
          </ul>
        </Section>
      ) : null}
      <Section
        title="Check"
        testid="section-check"
        actions={
          <button type="button" class="btn btn-primary" data-testid="run-check" disabled={check.running} onClick={runCheck}>
            {check.running ? 'Running…' : 'Run check'}
          </button>
        }
      >
        <ErrorBanner error={check.error} what="the check" />
        {check.result ? <CheckResults result={check.result} /> : !check.running ? <div class="muted">Run `shoal check` against this control plane.</div> : <Loading what="check" />}
      </Section>
    </div>
  );
}
