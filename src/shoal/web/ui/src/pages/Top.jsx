// `/top`: live table of the requests of a resource, aggregated from tap events.
import { useEffect, useRef, useState } from 'preact/hooks';
import { TapForm, TapStatus, useTapForm } from '../components/TapForm.jsx';
import { TopTable } from '../components/TopTable.jsx';
import { TopModel, tapQuery, useTap, useThrottledVersion } from '../lib/tap.js';

export function TopPage() {
  const form = useTapForm();
  const [active, setActive] = useState(null); // the query the running tap started with
  const model = useRef(new TopModel());
  const [version, dirty] = useThrottledVersion(300);
  const st = useTap(active, !!active, (ev) => {
    model.current.add(ev);
    dirty();
  });
  useEffect(() => {
    if (st.state === 'stopped') setActive(null);
  }, [st.state]);
  const rows = model.current.rows();
  const start = () => {
    model.current = new TopModel();
    setActive(tapQuery(form));
  };
  return (
    <div class="page" data-testid="page-top" data-version={version}>
      <div class="page-head">
        <h1>Top</h1>
      </div>
      <TapForm cmd="top" form={form} running={!!active} onStart={start} onStop={() => setActive(null)} />
      <TapStatus st={st} idle={form.resource ? 'Press Start to see the requests of ' + form.resource : 'Pick a namespace and a resource, then press Start.'} />
      <section class="card">
        <TopTable rows={rows} base={active || tapQuery(form)} empty={active ? 'Waiting for requests…' : 'No requests yet: start a query.'} />
      </section>
    </div>
  );
}
