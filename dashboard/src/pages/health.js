// Health: the cluster live from /sse/health (a `cluster` and a `pods` event every
// few seconds), each host's last hour from /api/metrics/nodes drawn as small SVG
// charts that the live samples extend (docs/observability-metrics.md).
import { get } from '../api.js';
import { h, humanBytes, replace } from '../dom.js';
import { followEvents } from '../sse.js';
import { say, table } from '../ui.js';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const SVG = 'http://www.w3.org/2000/svg';
const W = 240;
const H = 48;

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// points: [{t: ms, v: percent}] ascending; the y axis 0-100 %.
export function chart(points, label, kind) {
  // the span the data covers, at most the last hour (a young appliance fills the width too)
  const end = Date.now();
  const start = Math.min(end - MINUTE, Math.max(end - HOUR, points.length ? points[0].t : 0));
  const span = end - start;
  const x = (t) => (((t - start) / span) * W).toFixed(1);
  const y = (v) => (H - (Math.max(0, Math.min(100, v)) / 100) * H).toFixed(1);
  const now = points.length ? points[points.length - 1].v : null;
  const minutes = Math.round(span / MINUTE);
  const text = `${label}, last ${minutes} minute${minutes === 1 ? '' : 's'}: ${now === null ? 'no data' : `now ${now.toFixed(1)} %`}`;
  const line = points.length > 1 ? svg('polyline', { points: points.map((p) => `${x(p.t)},${y(p.v)}`).join(' '), class: 'line' })
    : points.length === 1 ? svg('circle', { cx: x(points[0].t), cy: y(points[0].v), r: 2, class: 'dot' }) : null;
  return svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': text,
    class: `chart ${kind}`, 'data-points': points.length, preserveAspectRatio: 'none' },
  svg('title', {}, text), svg('rect', { x: 0, y: 0, width: W, height: H, class: 'frame' }),
  svg('line', { x1: 0, x2: W, y1: H / 2, y2: H / 2, class: 'grid' }), ...(line ? [line] : []));
}

const kib = (q) => Number(String(q).replace(/Ki$/, '')) * 1024;
const pct = (v) => `${Number(v).toFixed(1)} %`;

function pressure(conditions) {
  const on = (conditions || []).filter((c) => c.status !== 'False');
  if (!on.length) return h('span', { class: 'badge s-up' }, 'none');
  return on.map((c) => h('span', { class: `badge ${c.status === 'True' ? 's-error' : 's-unknown'}` },
    c.status === 'True' ? c.type : `${c.type} unknown`));
}

export default async function healthPage(main) {
  document.title = 'Health · Appliance';
  const state = h('span', { class: 'badge', id: 'health-state' }, 'connecting');
  const updated = h('p', { id: 'health-updated', class: 'hint' }, 'Waiting for the first sample…');
  const summary = h('dl', { class: 'facts', id: 'cluster-summary' });
  const hosts = h('div', { id: 'health-hosts' }, h('p', { class: 'loading' }, 'Loading…'));
  const pods = h('div', { id: 'health-pods' });
  replace(main, h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, 'Health'), state), updated,
    h('section', { 'aria-labelledby': 'cluster-h' }, h('h2', { id: 'cluster-h' }, 'Cluster'), summary),
    h('section', { 'aria-labelledby': 'hosts-h' }, h('h2', { id: 'hosts-h' }, 'Hosts'), hosts),
    h('section', { 'aria-labelledby': 'pods-h' }, h('h2', { id: 'pods-h' }, 'Containers'), pods));

  const history = new Map(); // host -> {cpu: [{t, v}], mem: [...]}
  const series = (name) => {
    if (!history.has(name)) history.set(name, { cpu: [], mem: [] });
    return history.get(name);
  };
  let nodes = [];
  let podList = [];
  const drawHosts = () => {
    replace(hosts, table(['Host', 'CPU', 'Memory', 'Disk', 'Pressure', 'CPU (up to 1 h)', 'Memory (up to 1 h)'], nodes.map((n) => {
      const s = series(n.name);
      return h('tr', { 'data-host': n.name }, h('th', { scope: 'row' }, n.name),
        h('td', { class: 'cpu' }, `${pct(n.cpu_percent)} of ${n.cpu_capacity} cores`),
        h('td', { class: 'mem' }, `${pct(n.memory_percent)} (${humanBytes(kib(n.memory_usage))} of ${humanBytes(kib(n.memory_capacity))})`),
        h('td', {}, `${pct(n.disk_percent)} (${humanBytes(n.disk_usage)} of ${humanBytes(n.disk_capacity)})`),
        h('td', { class: 'pressure' }, pressure(n.conditions)),
        h('td', {}, chart(s.cpu, `CPU of ${n.name}`, 'cpu')), h('td', {}, chart(s.mem, `Memory of ${n.name}`, 'mem')));
    }), 'No hosts report yet.'));
  };
  const drawSummary = () => {
    const pressed = nodes.filter((n) => (n.conditions || []).some((c) => c.status !== 'False'));
    const avg = (k) => (nodes.length ? nodes.reduce((a, n) => a + Number(n[k]), 0) / nodes.length : 0);
    replace(summary,
      h('dt', {}, 'Hosts'), h('dd', { id: 'cluster-hosts' }, String(nodes.length)),
      h('dt', {}, 'Under pressure'), h('dd', { id: 'cluster-pressure' }, pressed.length ? pressed.map((n) => n.name).join(', ') : 'none'),
      h('dt', {}, 'CPU (average)'), h('dd', {}, pct(avg('cpu_percent'))),
      h('dt', {}, 'Memory (average)'), h('dd', {}, pct(avg('memory_percent'))),
      h('dt', {}, 'Containers running'), h('dd', { id: 'cluster-pods' }, String(podList.length)));
  };
  const drawPods = () => {
    replace(pods, table(['Name', 'Namespace', 'Host', 'CPU', 'Memory', 'Disk'], podList.map((p) => h('tr', {},
      h('td', {}, p.name), h('td', {}, h('code', {}, p.namespace)), h('td', {}, p.node),
      h('td', {}, `${((p.cpu_usage / 1e9) * 100).toFixed(1)} % of a core`),
      h('td', {}, `${humanBytes(p.memory_usage)} of ${humanBytes(p.memory_capacity)}`),
      h('td', {}, `${humanBytes(p.disk_usage)} of ${humanBytes(p.disk_capacity)}`))), 'No running containers you can see.'));
  };

  const end = new Date();
  const loadHistory = get(`/api/metrics/nodes?start=${new Date(end - HOUR).toISOString()}&end=${end.toISOString()}`)
    .then((r) => {
      for (const [name, points] of Object.entries(r.series || {})) {
        const s = series(name);
        const old = points.map((p) => ({ t: Date.parse(p.t), cpu: p.cpu, mem: p.mem }));
        const first = s.cpu.length ? s.cpu[0].t : Infinity; // live samples already in keep their place
        s.cpu = [...old.filter((p) => p.t < first).map((p) => ({ t: p.t, v: p.cpu })), ...s.cpu];
        s.mem = [...old.filter((p) => p.t < first).map((p) => ({ t: p.t, v: p.mem })), ...s.mem];
      }
      main.dataset.historyLoaded = 'yes';
      drawHosts();
    }, (error) => say(`History: ${error.message}`, 'error'));

  const stop = followEvents('/sse/health', (event) => {
    if (event.type === 'cluster') {
      const p = event.payload;
      nodes = p.nodes || [];
      const t = p.timestamp * 1000;
      for (const n of nodes) {
        const s = series(n.name);
        if (!s.cpu.length || s.cpu[s.cpu.length - 1].t < t) {
          s.cpu.push({ t, v: Number(n.cpu_percent) });
          s.mem.push({ t, v: Number(n.memory_percent) });
        }
        for (const k of ['cpu', 'mem']) while (s[k].length && s[k][0].t < Date.now() - HOUR) s[k].shift();
      }
      updated.dataset.timestamp = String(p.timestamp);
      updated.dataset.live = String(Number(updated.dataset.live || 0) + 1);
      updated.textContent = `Sample of ${new Date(t).toLocaleTimeString()}; a new one every few seconds.`;
      drawHosts();
      drawSummary();
    } else if (event.type === 'pods') {
      podList = event.payload.pods || [];
      drawPods();
      drawSummary();
    }
  }, {
    onState: (s) => { state.textContent = s; },
    onRefused: (error) => replace(hosts, h('p', { class: 'error' }, error.message)),
  });
  await Promise.race([loadHistory, new Promise((r) => { setTimeout(r, 50); })]);
  return stop;
}
