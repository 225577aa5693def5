// A uPlot time-series chart. Dragging across it selects a time range (`onZoom`);
// charts of a page share their cursor. The element with data-testid="chart" carries
// `data-points` (time steps with data) and `data-series` for tests.
import { useEffect, useRef, useState } from 'preact/hooks';

let loader = null;
const loadUPlot = () => (loader = loader || import('uplot').then((m) => m.default));

// Fixed colours for the series every page has, so p99 is always red, failures too.
const KNOWN = { success: '#16a34a', 'success rate': '#16a34a', failure: '#dc2626', p50: '#16a34a', p95: '#d97706', p99: '#dc2626', mTLS: '#16a34a', 'no identity': '#d97706', plaintext: '#dc2626', read: '#2563eb', write: '#7c3aed' };
export const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c', '#0d9488', '#9333ea'];

/**
 * xs: unix seconds; series: [{label, values, color?}] aligned with xs; range: [start, end];
 * fmt: value -> text (axis and legend).
 */
// counts (connections, fds) get whole-number ticks: 0.5 steps would print as 0, 1, 1, 2
const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000];

export function Chart({ title, xs, series, range, fmt = String, onZoom, height = 200, empty, syncKey = 'shoal', yMin, yMax, integer = false }) {
  const host = useRef(null);
  const plot = useRef(null);
  const props = useRef({});
  props.current = { range, fmt, onZoom, yMin, yMax, data: [xs, ...series.map((s) => s.values)] };
  const [failed, setFailed] = useState(null);
  const sig = series.map((s) => s.label).join('\u0000');
  const points = xs.reduce((n, _, i) => (series.some((s) => s.values[i] !== null && s.values[i] !== undefined) ? n + 1 : n), 0);

  useEffect(() => {
    let alive = true;
    const box = document.createElement('div');
    box.className = 'chart-canvas';
    host.current.appendChild(box);
    loadUPlot()
      .then((UPlot) => {
        if (!alive) return;
        const width = Math.max(200, host.current.clientWidth || 500);
        const opts = {
          width,
          height,
          scales: {
            x: { time: true, range: (u, min, max) => props.current.range || [min, max] },
            y: {
              range: (u, min, max) => {
                const { yMin: floor, yMax: ceil } = props.current;
                let lo = floor !== undefined ? Math.min(floor, min ?? 0) : min ?? 0;
                let hi = max === null || max === undefined || max <= lo ? lo + 1 : max * 1.08;
                if (ceil !== undefined) {
                  // e.g. success rate: up to 100%, from a little under the lowest point.
                  const low = Math.max(0, Math.min(min ?? ceil - 10, ceil - 1));
                  const pad = (ceil - low) * 0.06;
                  lo = Math.max(0, low - pad);
                  hi = ceil + pad / 2;
                }
                return [lo, hi];
              },
            },
          },
          series: [
            {},
            ...series.map((s, i) => ({
              label: s.label,
              stroke: s.color || KNOWN[s.label] || PALETTE[i % PALETTE.length],
              width: 1.6,
              points: { show: false },
              spanGaps: false,
              value: (u, v) => (v === null || v === undefined ? '-' : props.current.fmt(v)),
            })),
          ],
          axes: [
            { stroke: '#52606d', grid: { stroke: '#eef1f4' }, ticks: { stroke: '#d9dee4' } },
            { stroke: '#52606d', size: 70, grid: { stroke: '#eef1f4' }, ticks: { stroke: '#d9dee4' }, values: (u, vals) => vals.map((v) => props.current.fmt(v)), ...(integer ? { incrs: INTEGER_STEPS } : {}) },
          ],
          cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: syncKey } },
          legend: { live: true },
          hooks: {
            setSelect: [
              (u) => {
                if (u.select.width > 4 && props.current.onZoom) {
                  const a = u.posToVal(u.select.left, 'x');
                  const b = u.posToVal(u.select.left + u.select.width, 'x');
                  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
                  props.current.onZoom(Math.floor(a), Math.ceil(b));
                }
              },
            ],
          },
        };
        plot.current = new UPlot(opts, props.current.data, box);
      })
      .catch((e) => alive && setFailed(e));
    const ro = new ResizeObserver(() => {
      if (plot.current && host.current) plot.current.setSize({ width: Math.max(200, host.current.clientWidth), height });
    });
    ro.observe(host.current);
    return () => {
      alive = false;
      ro.disconnect();
      if (plot.current) plot.current.destroy();
      plot.current = null;
      box.remove();
    };
  }, [sig, height]);

  useEffect(() => {
    if (plot.current) plot.current.setData(props.current.data);
  }, [xs, series, range && range[0], range && range[1]]);

  return (
    <figure class="chart" data-testid="chart" data-title={title} data-points={points} data-series={series.length}>
      <figcaption>{title}</figcaption>
      <div class="chart-host" ref={host} />
      {failed ? <div class="chart-msg">Could not load the chart library.</div> : null}
      {!failed && points === 0 ? <div class="chart-msg" data-testid="chart-empty">{empty || 'No data in this time range'}</div> : null}
    </figure>
  );
}
