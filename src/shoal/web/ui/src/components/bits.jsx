// Small shared pieces: success-rate badge, error banner, empty state, chips, spinner.
import { band, pct } from '../lib/format.js';

const BAND_TEXT = { good: 'good', warning: 'warning', poor: 'poor', none: 'no data' };

/** A success rate with a coloured dot; the band is also in the title, not colour only. */
export function SuccessRate({ value }) {
  const b = band(value);
  // The dot is drawn by CSS (::before): one element per cell, large tables stay cheap.
  return (
    <span class={`sr sr-${b}`} data-band={b} title={`success rate: ${BAND_TEXT[b]}`}>
      {pct(value)}
    </span>
  );
}

export function ErrorBanner({ error, what }) {
  if (!error || error.status === 401) return null;
  return (
    <div class="banner banner-error" role="alert" data-testid="error">
      <strong>{what ? `Could not load ${what}: ` : 'Error: '}</strong>
      <span>{error.message || String(error)}</span>
    </div>
  );
}

export function Empty({ children, testid = 'empty' }) {
  return (
    <div class="empty" data-testid={testid}>
      {children}
    </div>
  );
}

export function Loading({ what }) {
  return <div class="loading">Loading {what || ''}…</div>;
}

export function Chip({ kind = 'neutral', children, testid, title }) {
  return (
    <span class={`chip chip-${kind}`} data-testid={testid} title={title}>
      {children}
    </span>
  );
}

export function Dot({ ok, warn }) {
  const k = ok ? 'good' : warn ? 'warning' : 'poor';
  return <span class={`dot dot-${k}`} data-state={k} aria-label={k} />;
}

export function Section({ id, title, children, actions, testid }) {
  return (
    <section class="card" id={id} data-testid={testid}>
      {title ? (
        <header class="card-head">
          <h2>{title}</h2>
          {actions ? <div class="card-actions">{actions}</div> : null}
        </header>
      ) : null}
      <div class="card-body">{children}</div>
    </section>
  );
}

/** The little chart icon linking to the history page (drawn by CSS). */
export function HistoryLink({ href, label }) {
  return <a class="icon-link icon-history" href={href} title={label || 'History'} aria-label={label || 'History'} data-testid="history-link" />;
}

/** The empty-table text for an API result: loading, failed, or `normal`. */
export function emptyText(res, normal) {
  if (res.loading) return 'Loading…';
  if (res.error && res.data === undefined) return 'Could not load this (see the error above).';
  return normal;
}
