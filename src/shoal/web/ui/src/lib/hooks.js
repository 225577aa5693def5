// Data hooks: `useApi(url)` fetches and re-fetches on every tick of the live clock.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { tickStore } from './live.js';
import { useStore } from './store.js';

/**
 * `const { data, error, loading } = useApi('/api/v1/stat?...')`.
 * A falsy url fetches nothing. With `live: false` the url is fetched once. Only one
 * request per hook is in flight: a slow answer is not stacked with the next tick's.
 * On an error the last good data stays (shown with the error banner).
 */
export function useApi(url, { live = true, keep = false } = {}) {
  const tick = useStore(tickStore);
  const [state, setState] = useState({ url, data: undefined, error: null });
  const ref = useRef({ url: undefined, busy: false, alive: true, fails: 0, nextAt: 0 });

  useEffect(() => () => {
    ref.current.alive = false;
  }, []);

  useEffect(() => {
    const r = ref.current;
    if (r.url !== url) {
      r.url = url;
      r.busy = false;
      r.fails = 0;
      r.nextAt = 0;
    }
    // After an error, retry less and less often (4s, 8s, ... 30s), not every tick.
    if (!url || r.busy || Date.now() < r.nextAt) return;
    r.busy = true;
    api(url).then(
      (data) => {
        if (!r.alive || r.url !== url) return;
        r.busy = false;
        r.fails = 0;
        r.nextAt = 0;
        setState({ url, data, error: null });
      },
      (error) => {
        if (!r.alive || r.url !== url) return;
        r.busy = false;
        r.fails += 1;
        r.nextAt = Date.now() + Math.min(30000, 2000 * 2 ** r.fails) - 100;
        setState((s) => ({ url, data: s.url === url ? s.data : undefined, error }));
      },
    );
  }, [url, live ? tick : 0]);

  // keep: show the previous url's data until the new one arrives (charts).
  const mine = state.url === url;
  const data = mine || keep ? state.data : undefined;
  const error = mine ? state.error : null;
  return { data, error, loading: !!url && data === undefined && !error, stale: !mine };
}

/** Calls `f` after `ms` without new calls (for the filter boxes). */
export function useDebounced(value, ms = 150) {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

/** Current time ticking with the live clock (seconds). */
export function useNow() {
  useStore(tickStore);
  return Date.now() / 1000;
}
