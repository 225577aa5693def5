// HTML5 history routing: real paths, so deep links survive a reload (the control plane
// serves index.html for every app path). Clicks on same-origin <a href="/..."> links are
// handled here, except for the server's own paths (/api/, /login, /logout, /assets/).
import { createStore, useStore } from './store.js';

const loc = () => ({ path: location.pathname, search: location.search, hash: location.hash });
export const locationStore = createStore(loc());
const listeners = new Set();

export function onNavigate(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

function changed() {
  const next = loc();
  const cur = locationStore.get();
  if (next.path !== cur.path || next.search !== cur.search || next.hash !== cur.hash) {
    for (const f of listeners) f(next);
    locationStore.set(next);
  }
}

const SERVER_PATHS = /^\/(api\/|assets\/|login\b|logout\b)/;

export function navigate(url, { replace = false } = {}) {
  const u = new URL(url, location.href);
  for (const f of rewriters) f(u);
  const target = u.pathname + u.search + u.hash;
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  changed();
  if (u.hash) requestAnimationFrame(() => scrollToHash(u.hash));
  else if (!replace) window.scrollTo(0, 0);
}

const rewriters = [];
/** Lets a module add query parameters to every in-app navigation (the window). */
export function addRewriter(f) {
  rewriters.push(f);
}

/** Merge `params` into the current query (null removes a key). */
export function setQuery(params, { replace = true } = {}) {
  const u = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') u.searchParams.delete(k);
    else u.searchParams.set(k, String(v));
  }
  navigate(u.pathname + u.search + u.hash, { replace });
}

export function useLocation() {
  return useStore(locationStore);
}

export function useQuery() {
  const l = useLocation();
  return new URLSearchParams(l.search);
}

window.addEventListener('popstate', changed);

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
  if (SERVER_PATHS.test(a.pathname)) return;
  e.preventDefault();
  navigate(a.pathname + a.search + a.hash, { replace: a.pathname === location.pathname && !!a.hash });
});

export function scrollToHash(hash) {
  const id = decodeURIComponent((hash || '').replace(/^#/, ''));
  if (!id) return false;
  const el = document.getElementById(id);
  if (!el) return false;
  el.scrollIntoView({ block: 'start' });
  return true;
}
