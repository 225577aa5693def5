// The 2-second refresh clock, the metrics window (10s, 1m, 10m, 1h) and the namespace
// last picked. The clock does not tick while the tab is hidden or the user paused it.
import { createStore } from './store.js';
import { addRewriter, locationStore, setQuery } from './router.js';

export const WINDOWS = ['10s', '1m', '10m', '1h'];
export const REFRESH_MS = 2000;

export const tickStore = createStore(0);
export const pausedStore = createStore(false); // paused by the user
export const hiddenStore = createStore(document.hidden);

function store(key, fallback) {
  try {
    return localStorage.getItem(key) || fallback;
  } catch {
    return fallback;
  }
}
function save(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* private mode: the URL still carries it */
  }
}

function initialWindow() {
  const w = new URLSearchParams(location.search).get('window');
  if (WINDOWS.includes(w)) return w;
  const s = store('shoal.window', '1m');
  return WINDOWS.includes(s) ? s : '1m';
}

export const windowStore = createStore(initialWindow());
export const nsStore = createStore(store('shoal.namespace', ''));

export function setWindow(w) {
  if (!WINDOWS.includes(w)) return;
  save('shoal.window', w);
  windowStore.set(w);
  setQuery({ window: w });
}

export function pickNamespace(ns) {
  if (!ns) return;
  save('shoal.namespace', ns);
  nsStore.set(ns);
}

// Every in-app navigation keeps the window in the URL.
addRewriter((u) => {
  if (!WINDOWS.includes(u.searchParams.get('window'))) u.searchParams.set('window', windowStore.get());
});
locationStore.sub((l) => {
  const w = new URLSearchParams(l.search).get('window');
  if (WINDOWS.includes(w) && w !== windowStore.get()) {
    save('shoal.window', w);
    windowStore.set(w);
  }
});
if (!WINDOWS.includes(new URLSearchParams(location.search).get('window'))) {
  const u = new URL(location.href);
  u.searchParams.set('window', windowStore.get());
  history.replaceState(null, '', u.pathname + u.search + u.hash);
  locationStore.set({ path: u.pathname, search: u.search, hash: u.hash });
}

setInterval(() => {
  if (!document.hidden && !pausedStore.get()) tickStore.set(tickStore.get() + 1);
}, REFRESH_MS);

document.addEventListener('visibilitychange', () => {
  hiddenStore.set(document.hidden);
  if (!document.hidden && !pausedStore.get()) tickStore.set(tickStore.get() + 1);
});

export function togglePaused() {
  pausedStore.set(!pausedStore.get());
  if (!pausedStore.get()) tickStore.set(tickStore.get() + 1);
}
