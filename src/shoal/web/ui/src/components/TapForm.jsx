// The query form of Top and Tap: namespace, resource, to-namespace, to-resource and
// "more filters"; every value lives in the URL query, so links and reloads keep it.
import { useEffect, useMemo } from 'preact/hooks';
import { apiUrl } from '../lib/api.js';
import { useApi } from '../lib/hooks.js';
import { nsStore } from '../lib/live.js';
import { setQuery, useQuery } from '../lib/router.js';
import { DEFAULT_MAX_RPS, TAP_FIELDS, cliCommand } from '../lib/tap.js';

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];
const arr = (d) => (Array.isArray(d) ? d : []);

/** The form's values from the URL query. */
export function useTapForm() {
  const q = useQuery();
  const f = {};
  for (const k of TAP_FIELDS) f[k] = q.get(k) || '';
  if (!f.namespace) f.namespace = nsStore.get() || '';
  return f;
}

function useResourceOptions(ns) {
  const deps = useApi(ns ? apiUrl('/api/v1/deployments', { namespace: ns }) : null, { live: false });
  const pods = useApi(ns ? apiUrl('/api/v1/pods', { namespace: ns }) : null, { live: false });
  return useMemo(() => {
    if (!ns) return [];
    const out = [`ns/${ns}`];
    for (const d of arr(deps.data)) out.push(`deploy/${d.name}`);
    for (const p of arr(pods.data)) out.push(`po/${p.name}`);
    return out;
  }, [ns, deps.data, pods.data]);
}

function Select({ name, label, value, options, onChange, placeholder, disabled }) {
  const opts = value && !options.includes(value) ? [value, ...options] : options;
  return (
    <label class="field">
      <span>{label}</span>
      <select name={name} data-testid={`field-${name}`} value={value} disabled={disabled} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">{placeholder}</option>
        {opts.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

function Text({ name, label, value, onInput, placeholder, type = 'text', disabled }) {
  return (
    <label class="field">
      <span>{label}</span>
      <input name={name} data-testid={`field-${name}`} type={type} value={value} placeholder={placeholder} disabled={disabled} onInput={(e) => onInput(e.currentTarget.value)} />
    </label>
  );
}

/**
 * cmd: "top" or "tap". running/onStart/onStop drive the buttons; the form is locked
 * while a tap runs (its query is the one it started with).
 */
export function TapForm({ cmd, form, running, onStart, onStop }) {
  const overview = useApi('/api/v1/overview', { live: false });
  const namespaces = arr(overview.data).map((r) => r.namespace).sort();
  const resources = useResourceOptions(form.namespace);
  const toResources = useResourceOptions(form.to_namespace || form.namespace);
  const set = (k) => (v) => setQuery({ [k]: v });
  const cli = cliCommand(cmd, form);
  const more = !!(form.authority || form.path || form.scheme || form.method || (form.max_rps && Number(form.max_rps) !== DEFAULT_MAX_RPS));

  // A namespace that came from the picker (not the URL) goes into the URL too.
  useEffect(() => {
    if (form.namespace && !new URLSearchParams(location.search).get('namespace')) setQuery({ namespace: form.namespace });
  }, [form.namespace]);

  return (
    <form
      class="card tap-form"
      data-testid="tap-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (!running && form.resource) onStart();
      }}
    >
      <div class="form-row">
        <Select name="namespace" label="Namespace" value={form.namespace} options={namespaces} placeholder="Namespace…" disabled={running} onChange={(v) => setQuery({ namespace: v, resource: '' })} />
        <Select name="resource" label="Resource" value={form.resource} options={resources} placeholder="Resource…" disabled={running} onChange={set('resource')} />
        <Select name="to_namespace" label="To Namespace" value={form.to_namespace} options={namespaces} placeholder="(same)" disabled={running} onChange={(v) => setQuery({ to_namespace: v, to_resource: '' })} />
        <Select name="to_resource" label="To Resource" value={form.to_resource} options={toResources.filter((r) => !r.startsWith('ns/') || form.to_namespace)} placeholder="(any)" disabled={running} onChange={set('to_resource')} />
        <div class="buttons">
          {/* Distinct keyed type=button elements: the Start button must not take the
              place of Stop during its click (a submit there would start again). */}
          {running ? (
            <button key="stop" type="button" class="btn btn-stop" data-testid="stop" onClick={onStop}>
              Stop
            </button>
          ) : (
            <button key="start" type="button" class="btn btn-primary" data-testid="start" disabled={!form.resource || !form.namespace} onClick={onStart}>
              Start
            </button>
          )}
        </div>
      </div>
      <details class="more" open={more}>
        <summary>More filters</summary>
        <div class="form-row">
          <Text name="authority" label="Authority" value={form.authority} placeholder="web.ns:8080" disabled={running} onInput={set('authority')} />
          <Text name="path" label="Path prefix" value={form.path} placeholder="/api" disabled={running} onInput={set('path')} />
          <Select name="scheme" label="Scheme" value={form.scheme} options={['http', 'https']} placeholder="(any)" disabled={running} onChange={set('scheme')} />
          <Select name="method" label="Method" value={form.method} options={METHODS} placeholder="(any)" disabled={running} onChange={set('method')} />
          <Text name="max_rps" label="Max RPS" type="number" value={form.max_rps} placeholder={String(DEFAULT_MAX_RPS)} disabled={running} onInput={set('max_rps')} />
        </div>
      </details>
      <div class="cli">
        <span class="cli-label">Current command</span>
        <code data-testid="cli">{cli}</code>
      </div>
    </form>
  );
}

/** "Running: 2 pods, 0 dropped" / "Tap stopped: error" / idle hint. */
export function TapStatus({ st, idle }) {
  if (st.state === 'stopped' && st.error) {
    return (
      <div class="banner banner-error" role="alert" data-testid="tap-status" data-state="stopped">
        Tap stopped: {st.error}
      </div>
    );
  }
  if (st.state === 'connecting') {
    return (
      <div class="banner banner-info" data-testid="tap-status" data-state="connecting">
        Starting tap…
      </div>
    );
  }
  if (st.state === 'running') {
    return (
      <div class="banner banner-ok" data-testid="tap-status" data-state="running">
        <span class="pulse" aria-hidden="true" />
        Tapping {st.pods.length} pod{st.pods.length === 1 ? '' : 's'}
        {st.dropped ? ` · ${st.dropped} events dropped` : ''}
        {st.warnings.length ? ` · ${st.warnings[st.warnings.length - 1]}` : ''}
      </div>
    );
  }
  return (
    <div class="banner banner-muted" data-testid="tap-status" data-state="idle">
      {idle}
    </div>
  );
}
