// Cytoscape with the dagre layout, loaded lazily by Graph.jsx (it is most of the bundle).
//
// Graphs are updated in place: labels and classes change every refresh, the layout runs
// only when the set of nodes or edges changed, so a 200-node graph stays interactive.
import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';

cytoscape.use(dagre);

// Cytoscape adds a <style> to <head> unless an element with this id exists; the
// dashboard's CSP forbids inline styles, and styles.css carries the same rule.
const STYLESHEET_ID = '__________cytoscape_stylesheet';
if (!document.getElementById(STYLESHEET_ID)) {
  const m = document.createElement('meta');
  m.id = STYLESHEET_ID;
  document.head.appendChild(m);
}

const C = {
  text: '#1f2933',
  muted: '#7b8794',
  line: '#8292a6',
  good: '#1f9d55',
  warning: '#d98c00',
  poor: '#d64545',
  none: '#9aa5b1',
  accent: '#2563eb',
};

const nodeWidth = (n) => Math.max(64, String(n.data('label') || '').length * 7.2 + 26);

const STYLE = [
  {
    selector: 'node',
    style: {
      shape: 'round-rectangle',
      width: nodeWidth,
      height: 30,
      'background-color': '#ffffff',
      'border-width': 2,
      'border-color': (n) => C[n.data('band')] || C.none,
      label: 'data(label)',
      color: C.text,
      'font-size': 12,
      'font-family': 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
      'text-valign': 'center',
      'text-halign': 'center',
      'min-zoomed-font-size': 6,
    },
  },
  { selector: 'node.center', style: { 'background-color': '#eaf1ff', 'border-color': C.accent, 'border-width': 3, 'font-weight': 'bold', height: 40 } },
  { selector: 'node.external', style: { 'border-style': 'dashed', color: C.muted } },
  { selector: 'node.link', style: {} },
  { selector: 'node:active, node.hover', style: { 'overlay-opacity': 0.08, 'overlay-color': C.accent } },
  {
    selector: 'edge',
    style: {
      width: 2,
      'curve-style': 'bezier',
      'line-color': C.line,
      'target-arrow-color': C.line,
      'target-arrow-shape': 'triangle',
      'arrow-scale': 1.1,
      label: 'data(label)',
      'font-size': 10,
      color: '#3e4c59',
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.9,
      'text-background-padding': 2,
      'text-rotation': 'none',
      'min-zoomed-font-size': 7,
    },
  },
  { selector: 'edge.unsecured', style: { 'line-style': 'dashed', 'line-dash-pattern': [6, 4] } },
  { selector: 'edge.secured', style: { 'line-style': 'solid', 'source-arrow-shape': 'square', 'source-arrow-color': C.good, 'arrow-scale': 0.9 } },
  { selector: 'edge.failing', style: { 'line-color': C.poor, 'target-arrow-color': C.poor, color: C.poor, width: 2.5 } },
  { selector: 'edge.idle', style: { 'line-color': '#c3cad3', 'target-arrow-color': '#c3cad3' } },
  { selector: 'edge.hover', style: { width: 3.5 } },
];

export function createGraph(container, { onNodeTap, onHover }) {
  const cy = cytoscape({
    container,
    style: STYLE,
    elements: [],
    minZoom: 0.15,
    maxZoom: 3,
    userZoomingEnabled: false, // enabled by a click on the graph, so wheel scroll still scrolls the page
    boxSelectionEnabled: false,
    autounselectify: true,
    textureOnViewport: false,
  });
  cy.scratch('_layouts', 0);
  cy.on('tap', 'node', (e) => onNodeTap && onNodeTap(e.target.data()));
  cy.on('tap', (e) => {
    if (e.target === cy) cy.userZoomingEnabled(true);
  });
  const hover = (e) => {
    e.target.addClass('hover');
    const p = e.renderedPosition || e.target.renderedPosition();
    onHover && onHover({ group: e.target.group(), data: e.target.data(), x: p.x, y: p.y });
  };
  cy.on('mouseover', 'node, edge', hover);
  cy.on('tap', 'edge', hover);
  cy.on('mouseout', 'node, edge', (e) => {
    e.target.removeClass('hover');
    onHover && onHover(null);
  });
  container.addEventListener('mouseleave', () => cy.userZoomingEnabled(false));
  return cy;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Bring `cy` to the given {nodes, edges}: data and classes in place; the layout
 * ('dagre' or 'octopus') runs again only when the element set changed.
 * Returns true when the layout ran.
 */
export function updateGraph(cy, { nodes, edges }, layout) {
  const u0 = performance.now();
  const sig = `${layout}|${nodes.map((n) => n.id).sort().join(',')}|${edges.map((e) => e.id).sort().join(',')}`;
  const changed = cy.scratch('_sig') !== sig;
  cy.batch(() => {
    const keep = new Set([...nodes.map((n) => n.id), ...edges.map((e) => e.id)]);
    cy.elements().forEach((el) => {
      if (!keep.has(el.id())) cy.remove(el);
    });
    for (const n of nodes) {
      const { classes = '', ...data } = n;
      const el = cy.getElementById(n.id);
      if (el.empty()) cy.add({ group: 'nodes', data, classes });
      else {
        if (!same(el.data(), data)) el.data(data);
        if (el.classes().join(' ') !== classes) el.classes(classes);
      }
    }
    for (const e of edges) {
      const { classes = '', ...data } = e;
      const el = cy.getElementById(e.id);
      if (el.empty()) cy.add({ group: 'edges', data, classes });
      else {
        if (!same(el.data(), data)) el.data(data);
        if (el.classes().join(' ') !== classes) el.classes(classes);
      }
    }
  });
  if (changed) {
    cy.scratch('_sig', sig);
    const t0 = performance.now();
    runLayout(cy, layout);
    cy.scratch('_layoutMs', Math.round(performance.now() - t0));
    cy.scratch('_layouts', cy.scratch('_layouts') + 1);
  }
  cy.scratch('_updateMs', Math.round(performance.now() - u0));
  return changed;
}

function runLayout(cy, layout) {
  if (cy.nodes().empty()) return;
  if (layout === 'octopus') octopus(cy);
  else layered(cy);
  fitHeight(cy);
}

/** Callers and callees in layers, left to right; nodes without edges in rows below. */
function layered(cy) {
  const connected = cy.nodes().filter((n) => n.degree(false) > 0);
  const lone = cy.nodes().filter((n) => n.degree(false) === 0);
  let bottom = 0;
  let width = 600;
  if (connected.nonempty()) {
    connected
      .union(connected.connectedEdges())
      .layout({ name: 'dagre', rankDir: 'LR', nodeSep: 16, rankSep: 140, edgeSep: 12, ranker: connected.length > 80 ? 'tight-tree' : 'network-simplex', fit: false, animate: false })
      .run();
    const bb = connected.boundingBox();
    bottom = bb.y2 + 50;
    width = Math.max(width, bb.w);
    layoutRows(lone, bb.x1, bottom, width);
  } else {
    layoutRows(lone, 0, 0, Math.max(600, Math.sqrt(lone.length) * 180));
  }
}

function layoutRows(nodes, x0, y0, width) {
  let x = x0;
  let y = y0;
  const sorted = nodes.sort((a, b) => String(a.data('label')).localeCompare(String(b.data('label'))));
  sorted.forEach((n) => {
    const w = nodeWidth(n);
    if (x > x0 && x + w > x0 + width) {
      x = x0;
      y += 50;
    }
    n.position({ x: x + w / 2, y });
    x += w + 20;
  });
}

/** The resource in the middle, inbound neighbours on the left, outbound on the right. */
function octopus(cy) {
  const place = (nodes, x) => {
    const gap = 52;
    const n = nodes.length;
    nodes.forEach((node, i) => node.position({ x, y: (i - (n - 1) / 2) * gap }));
  };
  const sortByLabel = (c) => c.sort((a, b) => String(a.data('label')).localeCompare(String(b.data('label'))));
  place(sortByLabel(cy.nodes('[side = "in"]')), -320);
  place(sortByLabel(cy.nodes('[side = "out"]')), 320);
  cy.nodes('[side = "center"]').position({ x: 0, y: 0 });
}

/** Size the container to the drawing (within bounds), then fit. */
function fitHeight(cy) {
  const el = cy.container();
  const bb = cy.elements().boundingBox();
  const w = el.clientWidth || 800;
  const scale = Math.min(1.2, (w - 40) / Math.max(bb.w, 1));
  const h = Math.round(Math.min(720, Math.max(220, bb.h * scale + 60)));
  el.style.height = `${h}px`;
  cy.resize();
  cy.fit(undefined, 24);
  if (cy.zoom() > 1.2) {
    cy.zoom(1.2);
    cy.center();
  }
}

export function fit(cy) {
  cy.resize();
  cy.fit(undefined, 24);
  if (cy.zoom() > 1.2) {
    cy.zoom(1.2);
    cy.center();
  }
}

export function zoomBy(cy, f) {
  const z = Math.min(cy.maxZoom(), Math.max(cy.minZoom(), cy.zoom() * f));
  cy.zoom({ level: z, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
}
