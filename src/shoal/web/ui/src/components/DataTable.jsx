// The one table of the dashboard: click a header to sort (ascending, then descending),
// rows filtered by name, keyed rows that skip re-rendering when their data is unchanged.
import { Component } from 'preact';
import { useMemo, useState } from 'preact/hooks';

class Row extends Component {
  shouldComponentUpdate(next) {
    return next.sig !== this.props.sig || next.columns !== this.props.columns;
  }
  render({ row, columns, name, rowClass }) {
    return (
      <tr data-testid="row" data-name={name} class={rowClass}>
        {columns.map((c) => (
          <td key={c.key} class={c.numeric ? 'num' : c.className}>
            {c.render ? c.render(row) : fmtCell(c.value ? c.value(row) : row[c.key])}
          </td>
        ))}
      </tr>
    );
  }
}

function fmtCell(v) {
  return v === null || v === undefined || v === '' ? '-' : v;
}

function compare(a, b) {
  const na = a === null || a === undefined || (typeof a === 'number' && Number.isNaN(a));
  const nb = b === null || b === undefined || (typeof b === 'number' && Number.isNaN(b));
  if (na || nb) return na === nb ? 0 : na ? 1 : -1; // no data last, in both directions
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  // Plain code-point order, as the CLI (and `sort`) orders names.
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

const sortValue = (c, row) => (c.sort ? c.sort(row) : c.value ? c.value(row) : row[c.key]);

/**
 * columns: [{key, label, numeric?, value?(row), sort?(row), render?(row), sortable?}]
 * rowKey(row) unique key; rowName(row) the name matched by `filter` and shown as data-name.
 */
export function DataTable({ testid, columns, rows, rowKey, rowName, filter, empty, defaultSort, rowClass, label }) {
  const [sort, setSort] = useState(defaultSort || null);
  const f = (filter || '').trim().toLowerCase();

  const shown = useMemo(() => {
    let out = rows || [];
    if (f) out = out.filter((r) => String(rowName(r)).toLowerCase().includes(f));
    if (sort) {
      const col = columns.find((c) => c.key === sort.key);
      if (col) {
        const sign = sort.dir === 'desc' ? -1 : 1;
        out = out
          .map((r, i) => [r, sortValue(col, r), i])
          .sort((a, b) => {
            const na = a[1] === null || a[1] === undefined;
            const nb = b[1] === null || b[1] === undefined;
            if (na || nb) return na === nb ? a[2] - b[2] : na ? 1 : -1;
            return sign * compare(a[1], b[1]) || a[2] - b[2];
          })
          .map((x) => x[0]);
      }
    }
    return out;
  }, [rows, f, sort, columns]);

  const click = (c) => {
    if (c.sortable === false) return;
    setSort((s) => (s && s.key === c.key ? { key: c.key, dir: s.dir === 'asc' ? 'desc' : 'asc' } : { key: c.key, dir: 'asc' }));
  };

  return (
    <div class="table-wrap">
      <table class="data" data-testid={testid} aria-label={label}>
        <thead>
          <tr>
            {columns.map((c) => {
              const active = sort && sort.key === c.key;
              const sortable = c.sortable !== false;
              return (
                <th
                  key={c.key}
                  class={`${c.numeric ? 'num' : ''} ${sortable ? 'sortable' : ''} ${active ? 'sorted' : ''}`}
                  data-col={c.key}
                  title={c.title}
                  aria-sort={active ? (sort.dir === 'asc' ? 'ascending' : 'descending') : undefined}
                  onClick={() => click(c)}
                >
                  {c.label}
                  {sortable ? (
                    <span class="arrow" aria-hidden="true">
                      {active ? (sort.dir === 'asc' ? '▲' : '▼') : '↕'}
                    </span>
                  ) : null}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <Row
              key={rowKey(r)}
              row={r}
              name={rowName(r)}
              columns={columns}
              rowClass={rowClass ? rowClass(r) : undefined}
              sig={JSON.stringify(r)}
            />
          ))}
          {shown.length === 0 ? (
            <tr class="empty-row">
              <td colSpan={columns.length} data-testid="empty">
                {f && rows && rows.length ? `No rows match “${filter}”` : empty || 'No data'}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}

export function FilterBox({ value, onInput, placeholder }) {
  return (
    <input
      class="filter"
      type="search"
      data-testid="filter"
      placeholder={placeholder || 'Filter by name'}
      aria-label="Filter by name"
      value={value}
      onInput={(e) => onInput(e.currentTarget.value)}
    />
  );
}
