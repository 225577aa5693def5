// Routes of the app: one real path per page, so links and reloads land where they point.
import { useEffect } from 'preact/hooks';
import { Layout } from './components/Layout.jsx';
import { SINGULAR, TITLE } from './lib/format.js';
import { useLocation } from './lib/router.js';
import { ControlPlane } from './pages/ControlPlane.jsx';
import { History } from './pages/History.jsx';
import { Namespace } from './pages/Namespace.jsx';
import { Overview } from './pages/Overview.jsx';
import { Resource } from './pages/Resource.jsx';
import { RoutesPage } from './pages/Routes.jsx';
import { TapPage } from './pages/Tap.jsx';
import { TopPage } from './pages/Top.jsx';

const d = (s) => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};
const e = encodeURIComponent;
const home = { label: 'Namespaces', href: '/namespaces' };

const ROUTES = [
  [/^\/(namespaces\/?)?$/, () => ({ crumbs: [home], page: <Overview /> })],
  [
    /^\/namespaces\/([^/]+)\/?$/,
    (m) => {
      const ns = d(m[1]);
      return { crumbs: [home, { label: ns }], page: <Namespace key={ns} ns={ns} /> };
    },
  ],
  [
    /^\/namespaces\/([^/]+)\/(deployments|pods|replicasets|services)\/([^/]+)\/?$/,
    (m) => {
      const [ns, kind, name] = [d(m[1]), SINGULAR[m[2]], d(m[3])];
      return {
        crumbs: [home, { label: ns, href: `/namespaces/${e(ns)}` }, { label: TITLE[kind] + 's', href: `/namespaces/${e(ns)}#${m[2]}` }, { label: name }],
        page: <Resource key={`${ns}/${kind}/${name}`} ns={ns} kind={kind} name={name} />,
      };
    },
  ],
  [/^\/controlplane\/?$/, () => ({ crumbs: [{ label: 'Control Plane' }], page: <ControlPlane /> })],
  [/^\/top\/?$/, () => ({ crumbs: [{ label: 'Top' }], page: <TopPage /> })],
  [/^\/tap\/?$/, () => ({ crumbs: [{ label: 'Tap' }], page: <TapPage /> })],
  [/^\/routes\/?$/, () => ({ crumbs: [{ label: 'Routes' }], page: <RoutesPage /> })],
  [/^\/history\/?$/, () => ({ crumbs: [{ label: 'History' }], page: <History /> })],
];

function NotFound({ path }) {
  return (
    <div class="card empty" data-testid="not-found">
      <h1>Page not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. Go to the <a href="/namespaces">namespaces</a>.
      </p>
    </div>
  );
}

export function App() {
  const loc = useLocation();
  let view = null;
  for (const [re, make] of ROUTES) {
    const m = re.exec(loc.path);
    if (m) {
      view = make(m);
      break;
    }
  }
  if (!view) view = { crumbs: [{ label: 'Not found' }], page: <NotFound path={loc.path} /> };
  const title = view.crumbs.map((c) => c.label).join(' / ');
  useEffect(() => {
    document.title = `${title} · shoal`;
  }, [title]);
  return <Layout crumbs={view.crumbs}>{view.page}</Layout>;
}
