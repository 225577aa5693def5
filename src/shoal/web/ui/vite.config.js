// Build of shoal's dashboard: `npm ci && npm run build` writes dist/, which the control
// plane serves (index.html for every app path, hashed files under /assets/).
//
// `npm run dev` serves the sources with hot reload and forwards the API to a running
// control plane: SHOAL_API=http://127.0.0.1:PORT SHOAL_TOKEN=... npm run dev
import { defineConfig } from 'vite';

const api = process.env.SHOAL_API || 'http://127.0.0.1:8085';
const token = process.env.SHOAL_TOKEN;
const forward = {
  target: api,
  changeOrigin: true,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
};

export default defineConfig({
  base: '/',
  // Preact's automatic JSX runtime (no babel, no preset needed).
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2020',
    // The served CSP allows only same-origin scripts: no inline preload polyfill.
    modulePreload: { polyfill: false },
    // cytoscape (+dagre) is the one big dependency; it is loaded lazily with the graph.
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: { '/api': forward, '/login': forward, '/logout': forward },
  },
});
