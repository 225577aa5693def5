// Entry point of shoal's dashboard.
import { render } from 'preact';
import 'uplot/dist/uPlot.min.css';
import './styles.css';
import { App } from './app.jsx';

render(<App />, document.getElementById('app'));
