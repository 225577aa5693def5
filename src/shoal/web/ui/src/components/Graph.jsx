// A cytoscape graph in a Preact page. Tests read it three ways: the instance at
// `window.__shoalGraphs[name]`, `data-nodes`/`data-edges` counts on the element with the
// test id, and a visually hidden list of edges (`<ul data-testid="{testid}-edges">`, one
// "src → dst" per item) and nodes (`{testid}-nodes`).
import { useEffect, useRef, useState } from 'preact/hooks';
import { navigate } from '../lib/router.js';

let loader = null;
const loadCy = () => (loader = loader || import('./cy.js'));

export function Graph({ testid, name, nodes, edges, layout = 'dagre', tooltip, empty }) {
  const host = useRef(null);
  const cyRef = useRef(null);
  const modRef = useRef(null);
  const [ready, setReady] = useState(false);
  const [failed, setFailed] = useState(null);
  const [hover, setHover] = useState(null);
  const [layouts, setLayouts] = useState(0);

  useEffect(() => {
    let alive = true;
    const box = document.createElement('div');
    box.className = 'graph-canvas';
    host.current.appendChild(box);
    // Load (and compile) cytoscape when the browser is idle: the page's tables first.
    const idle = window.requestIdleCallback || ((f) => setTimeout(f, 100));
    new Promise((resolve) => idle(resolve, { timeout: 800 }))
      .then(loadCy)
      .then((mod) => {
        if (!alive) return;
        modRef.current = mod;
        const cy = mod.createGraph(box, {
          onNodeTap: (d) => d.href && navigate(d.href),
          onHover: (h) => setHover(h),
        });
        cyRef.current = cy;
        window.__shoalGraphs = window.__shoalGraphs || {};
        window.__shoalGraphs[name] = cy;
        setReady(true);
      })
      .catch((e) => alive && setFailed(e));
    return () => {
      alive = false;
      if (cyRef.current) {
        if (window.__shoalGraphs && window.__shoalGraphs[name] === cyRef.current) delete window.__shoalGraphs[name];
        cyRef.current.destroy();
        cyRef.current = null;
      }
      box.remove();
    };
  }, [name]);

  useEffect(() => {
    if (!ready || !cyRef.current) return undefined;
    // In a task of its own, so the page's tables are committed and painted before a
    // (possibly long) first layout.
    const t = setTimeout(() => {
      const cy = cyRef.current;
      if (!cy) return;
      modRef.current.updateGraph(cy, { nodes, edges }, layout);
      // Timings for tests and curious people: data-layouts, data-layout-ms, data-update-ms.
      const el = host.current && host.current.parentElement;
      if (el) {
        el.setAttribute('data-layout-ms', String(cy.scratch('_layoutMs') ?? ''));
        el.setAttribute('data-update-ms', String(cy.scratch('_updateMs') ?? ''));
      }
      setLayouts(cy.scratch('_layouts'));
    }, 0);
    return () => clearTimeout(t);
  }, [ready, nodes, edges, layout]);

  useEffect(() => {
    if (!ready) return undefined;
    const onResize = () => cyRef.current && modRef.current.fit(cyRef.current);
    window.addEventListener('resize', onResize);
    return () => window.removeEventListener('resize', onResize);
  }, [ready]);

  const cy = () => cyRef.current;
  return (
    <div class="graph" data-testid={testid} data-nodes={nodes.length} data-edges={edges.length} data-ready={ready ? 'true' : 'false'} data-layouts={layouts}>
      <div class="graph-host" ref={host} />
      {!ready && !failed ? <div class="graph-msg">Loading graph…</div> : null}
      {failed ? <div class="graph-msg">Could not load the graph library: {String(failed.message || failed)}</div> : null}
      {ready && !nodes.length ? <div class="graph-msg" data-testid="graph-empty">{empty || 'Nothing to draw'}</div> : null}
      {ready && nodes.length ? (
        <div class="graph-tools">
          <button type="button" title="Zoom in" aria-label="Zoom in" onClick={() => modRef.current.zoomBy(cy(), 1.25)}>
            +
          </button>
          <button type="button" title="Zoom out" aria-label="Zoom out" onClick={() => modRef.current.zoomBy(cy(), 0.8)}>
            −
          </button>
          <button type="button" title="Fit to view" onClick={() => modRef.current.fit(cy())}>
            Fit
          </button>
        </div>
      ) : null}
      {hover && tooltip ? (
        <div class="graph-tip" style={{ left: `${Math.round(hover.x + 14)}px`, top: `${Math.round(hover.y + 14)}px` }} data-testid="graph-tip">
          {tooltip(hover)}
        </div>
      ) : null}
      <ul class="sr-only" data-testid={`${testid}-edges`}>
        {edges.map((e) => (
          <li key={e.id} data-src={e.source} data-dst={e.target}>
            {`${e.srcLabel || e.source} → ${e.dstLabel || e.target}`}
          </li>
        ))}
      </ul>
      <ul class="sr-only" data-testid={`${testid}-nodes`}>
        {nodes.map((n) => (
          <li key={n.id}>{n.label}</li>
        ))}
      </ul>
    </div>
  );
}

/** Tooltip body for edges and nodes: a small definition list. */
export function TipList({ title, items }) {
  return (
    <>
      <div class="tip-title">{title}</div>
      <dl>
        {items.map(([k, v]) => (
          <div key={k} class="tip-row">
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
    </>
  );
}
