// The frame of every page: sidebar (navigation, namespace picker, workloads, tools) and
// header (breadcrumbs, metrics window, live/paused, version, log out).
import { logout } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { WINDOWS, hiddenStore, nsStore, pausedStore, pickNamespace, setWindow, togglePaused, windowStore } from '../lib/live.js';
import { navigate, useLocation } from '../lib/router.js';
import { useStore } from '../lib/store.js';

function NavLink({ href, children, active, testid }) {
  return (
    <a href={href} class={active ? 'nav-link active' : 'nav-link'} aria-current={active ? 'page' : undefined} data-testid={testid}>
      {children}
    </a>
  );
}

export function currentNamespace(path, search) {
  const m = /^\/namespaces\/([^/]+)/.exec(path);
  if (m) return decodeURIComponent(m[1]);
  const q = new URLSearchParams(search).get('namespace');
  return q || '';
}

function Sidebar() {
  const loc = useLocation();
  const stored = useStore(nsStore);
  const { data } = useApi('/api/v1/overview');
  const names = (Array.isArray(data) ? data.map((r) => r.namespace) : []).sort();
  const here = currentNamespace(loc.path, loc.search);
  let ns = here || stored;
  if (!ns && names.length) ns = names.includes('default') && names.length === 1 ? 'default' : names.find((n) => n !== 'shoal-system') || names[0];
  const options = ns && !names.includes(ns) ? [...names, ns].sort() : names;
  const p = loc.path;
  const e = encodeURIComponent;
  return (
    <nav class="sidebar" aria-label="Main">
      <a class="brand" href="/namespaces">
        <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
          <circle cx="6" cy="14" r="3" fill="currentColor" />
          <circle cx="13" cy="9" r="3" fill="currentColor" opacity=".75" />
          <circle cx="19" cy="15" r="3" fill="currentColor" opacity=".5" />
        </svg>
        <span>shoal</span>
      </a>
      <div class="nav-group">
        <NavLink href="/namespaces" active={p === '/' || p === '/namespaces'} testid="nav-namespaces">Namespaces</NavLink>
        <NavLink href="/controlplane" active={p === '/controlplane'} testid="nav-controlplane">Control Plane</NavLink>
      </div>
      <div class="nav-group">
        <label class="nav-title" for="ns-picker">Namespace</label>
        <select
          id="ns-picker"
          data-testid="ns-picker"
          value={ns}
          onChange={(ev) => {
            const v = ev.currentTarget.value;
            pickNamespace(v);
            navigate(`/namespaces/${e(v)}`);
          }}
        >
          {!ns ? <option value="">(none)</option> : null}
          {options.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </div>
      <div class="nav-group">
        <div class="nav-title">Workloads</div>
        {ns ? (
          <>
            <NavLink href={`/namespaces/${e(ns)}#deployments`} testid="nav-deployments">Deployments</NavLink>
            <NavLink href={`/namespaces/${e(ns)}#pods`} testid="nav-pods">Pods</NavLink>
            <NavLink href={`/namespaces/${e(ns)}#replicasets`} testid="nav-replicasets">Replica Sets</NavLink>
            <NavLink href={`/namespaces/${e(ns)}#services`} testid="nav-services">Services</NavLink>
          </>
        ) : (
          <span class="nav-note">Pick a namespace</span>
        )}
      </div>
      <div class="nav-group">
        <div class="nav-title">Tools</div>
        <NavLink href="/top" active={p === '/top'} testid="nav-top">Top</NavLink>
        <NavLink href="/tap" active={p === '/tap'} testid="nav-tap">Tap</NavLink>
        <NavLink href="/routes" active={p === '/routes'} testid="nav-routes">Routes</NavLink>
        <NavLink href="/history" active={p === '/history' && new URLSearchParams(loc.search).get('scope') !== 'proxies'} testid="nav-history">History</NavLink>
        <NavLink href="/history?scope=proxies" active={p === '/history' && new URLSearchParams(loc.search).get('scope') === 'proxies'} testid="nav-mesh-health">Mesh health</NavLink>
      </div>
    </nav>
  );
}

function LiveIndicator() {
  const paused = useStore(pausedStore);
  const hidden = useStore(hiddenStore);
  const state = paused || hidden ? 'paused' : 'live';
  return (
    <button
      type="button"
      class={`live live-${state}`}
      data-testid="live"
      data-state={state}
      title={paused ? 'Refresh paused: click to resume' : hidden ? 'Paused while the tab is hidden' : 'Refreshing every 2s: click to pause'}
      onClick={togglePaused}
    >
      <span class="dot" aria-hidden="true" />
      {state}
    </button>
  );
}

function Header({ crumbs }) {
  const win = useStore(windowStore);
  const { data: health } = useApi('/api/v1/health', { live: false });
  return (
    <header class="topbar">
      <nav class="crumbs" aria-label="Breadcrumb" data-testid="breadcrumbs">
        {crumbs.map((c, i) => (
          <span key={i} class="crumb">
            {i ? <span class="sep" aria-hidden="true">/</span> : null}
            {c.href && i < crumbs.length - 1 ? <a href={c.href}>{c.label}</a> : <span>{c.label}</span>}
          </span>
        ))}
      </nav>
      <div class="topbar-right">
        <label class="window-pick">
          <span>Window</span>
          <select data-testid="window" value={win} onChange={(e) => setWindow(e.currentTarget.value)}>
            {WINDOWS.map((w) => (
              <option key={w} value={w}>
                {w}
              </option>
            ))}
          </select>
        </label>
        <LiveIndicator />
        <span class="version" data-testid="version" title="shoal version">
          {health && health.version ? `shoal ${health.version}` : 'shoal'}
        </span>
        <button type="button" class="btn btn-ghost" data-testid="logout" onClick={logout}>
          Log out
        </button>
      </div>
    </header>
  );
}

export function Layout({ crumbs, children }) {
  return (
    <div class="shell">
      <Sidebar />
      <div class="main">
        <Header crumbs={crumbs} />
        <main class="content" id="content">
          {children}
        </main>
      </div>
    </div>
  );
}
