// A tiny observable value and the hook that re-renders a component when it changes.
import { useEffect, useState } from 'preact/hooks';

export function createStore(value) {
  const subs = new Set();
  return {
    get: () => value,
    set(next) {
      if (Object.is(next, value)) return;
      value = next;
      for (const f of [...subs]) f(value);
    },
    sub(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
  };
}

export function useStore(store) {
  const [, force] = useState(0);
  useEffect(() => store.sub(() => force((n) => n + 1)), [store]);
  return store.get();
}
