// `/tap`: every request of a resource as it happens, newest first; a row opens to its
// request init, response init and response end (all fields and headers).
import { Component } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { TapForm, TapStatus, useTapForm } from '../components/TapForm.jsx';
import { micros } from '../lib/format.js';
import { TapLog, peer, tapQuery, useTap, useThrottledVersion } from '../lib/tap.js';

const GRPC = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated'];
export const grpcName = (c) => (c === null || c === undefined || c === '' ? '-' : GRPC[Number(c)] || `Code(${c})`);

const isRedacted = (v) => typeof v === 'string' && /^<redacted/i.test(v);

function Headers({ headers }) {
  if (!Array.isArray(headers) || !headers.length) return <div class="muted">no headers</div>;
  return (
    <table class="kv headers" data-testid="tap-headers">
      <tbody>
        {headers.map((h, i) => {
          const [name, value] = Array.isArray(h) ? h : [h && h.name, h && h.value];
          const red = isRedacted(value);
          return (
            <tr key={i}>
              <th>{String(name ?? '')}</th>
              <td class={red ? 'redacted' : undefined} data-redacted={red ? 'true' : undefined} title={red ? 'redacted by the proxy' : undefined}>
                {String(value ?? '')}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function labelsText(l) {
  if (!l || typeof l !== 'object') return '-';
  const parts = Object.entries(l)
    .filter(([, v]) => v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(', ') : '-';
}

function KV({ items }) {
  return (
    <table class="kv">
      <tbody>
        {items.map(([k, v]) => (
          <tr key={k}>
            <th>{k}</th>
            <td>{v === null || v === undefined || v === '' ? '-' : String(v)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Detail({ row }) {
  const { req, rsp, end } = row;
  return (
    <div class="tap-detail" data-testid="tap-detail">
      <section data-testid="tap-req">
        <h3>Request Init</h3>
        {req ? (
          <>
            <KV
              items={[
                ['ID', req.id],
                ['Direction', req.direction],
                ['Pod', req.pod],
                ['Source', req.src],
                ['Source labels', labelsText(req.src_labels)],
                ['Destination', req.dst],
                ['Destination labels', labelsText(req.dst_labels)],
                ['TLS', req.tls],
                ['Method', req.method],
                ['Scheme', req.scheme],
                ['Authority', req.authority],
                ['Path', req.path],
                ['Route', req.route_labels && req.route_labels.route],
              ]}
            />
            <h4>Headers</h4>
            <Headers headers={req.headers} />
          </>
        ) : (
          <div class="muted">not seen (the tap started after the request)</div>
        )}
      </section>
      <section data-testid="tap-rsp">
        <h3>Response Init</h3>
        {rsp ? (
          <>
            <KV
              items={[
                ['Status', rsp.status],
                ['Latency', micros(rsp.latency_us)],
              ]}
            />
            <h4>Headers</h4>
            <Headers headers={rsp.headers} />
          </>
        ) : (
          <div class="muted">waiting for the response…</div>
        )}
      </section>
      <section data-testid="tap-end">
        <h3>Response End</h3>
        {end ? (
          <>
            <KV
              items={[
                ['gRPC status', end.grpc_status === null || end.grpc_status === undefined ? '-' : `${grpcName(end.grpc_status)} (${end.grpc_status})`],
                ['Duration', micros(end.duration_us)],
                ['Response bytes', end.response_bytes],
                ['Classification', end.classification],
                ['Error', end.error],
              ]}
            />
            <h4>Trailers</h4>
            <Headers headers={end.headers} />
          </>
        ) : (
          <div class="muted">waiting for the end of the stream…</div>
        )}
      </section>
    </div>
  );
}

class TapRow extends Component {
  shouldComponentUpdate(n) {
    return n.row !== this.props.row || n.open !== this.props.open;
  }
  render({ row, open, toggle }) {
    const e = row.req || row.rsp || row.end;
    const failed = row.end && row.end.classification === 'failure';
    const status = row.rsp ? row.rsp.status : row.end && row.end.error ? row.end.error : '';
    return (
      <>
        <tr
          data-testid="tap-row"
          data-id={row.id}
          class={`tap-row ${open ? 'open' : ''} ${failed ? 'failed' : ''}`}
          aria-expanded={open ? 'true' : 'false'}
          tabIndex={0}
          onClick={() => toggle(row.id)}
          onKeyDown={(ev) => {
            if (ev.key === 'Enter' || ev.key === ' ') {
              ev.preventDefault();
              toggle(row.id);
            }
          }}
        >
          <td class="icon">
            <span class="caret" aria-hidden="true">{open ? '▾' : '▸'}</span>
          </td>
          <td>
            <span class={`dir dir-${e.direction === 'inbound' ? 'in' : 'out'}`}>{e.direction === 'inbound' ? 'IN' : 'OUT'}</span>
          </td>
          <td class="peer">
            {peer(e.src_labels, e.src)} → {peer(e.dst_labels, e.dst)}
          </td>
          <td>{e.method || '-'}</td>
          <td class="path" data-testid="tap-path">
            {e.path || '-'}
          </td>
          <td class="num">{status === '' ? '…' : String(status)}</td>
          <td class="num">{row.rsp ? micros(row.rsp.latency_us) : '-'}</td>
          <td>{row.end ? grpcName(row.end.grpc_status) : '-'}</td>
        </tr>
        {open ? (
          <tr class="tap-detail-row">
            <td colSpan={8}>
              <Detail row={row} />
            </td>
          </tr>
        ) : null}
      </>
    );
  }
}

export function TapList({ rows, running, testid = 'table-tap' }) {
  const [open, setOpen] = useState(() => new Set());
  const toggle = (id) =>
    setOpen((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  return (
    <div class="table-wrap">
      <table class="data tap" data-testid={testid}>
        <thead>
          <tr>
            <th class="icon" />
            <th>Direction</th>
            <th>Name</th>
            <th>Method</th>
            <th>Path</th>
            <th class="num">Response</th>
            <th class="num">Latency</th>
            <th>gRPC Status</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <TapRow key={r.id} row={r} open={open.has(r.id)} toggle={toggle} />
          ))}
          {rows.length === 0 ? (
            <tr class="empty-row">
              <td colSpan={8} data-testid="empty">
                {running ? 'Waiting for requests…' : 'No requests yet: start a tap.'}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}

export function TapPage() {
  const form = useTapForm();
  const [active, setActive] = useState(null);
  const log = useRef(new TapLog(500));
  const [version, dirty] = useThrottledVersion(250);
  const st = useTap(active, !!active, (ev) => {
    log.current.add(ev);
    dirty();
  });
  useEffect(() => {
    if (st.state === 'stopped') setActive(null);
  }, [st.state]);
  const rows = log.current.rows();
  return (
    <div class="page" data-testid="page-tap" data-version={version}>
      <div class="page-head">
        <h1>Tap</h1>
        <div class="grow" />
        <button
          type="button"
          class="btn btn-ghost"
          data-testid="clear"
          onClick={() => {
            log.current = new TapLog(500);
            dirty();
          }}
        >
          Clear
        </button>
      </div>
      <TapForm
        cmd="tap"
        form={form}
        running={!!active}
        onStart={() => {
          log.current = new TapLog(500);
          setActive(tapQuery(form));
        }}
        onStop={() => setActive(null)}
      />
      <TapStatus st={st} idle={form.resource ? `Press Start to tap ${form.resource}` : 'Pick a namespace and a resource, then press Start.'} />
      <section class="card">
        <TapList rows={rows} running={!!active} />
        {rows.length >= 500 ? <p class="muted small">Showing the newest 500 requests.</p> : null}
      </section>
    </div>
  );
}
