// Logs: the live stream /sse/logs (admins), its level and source filters; the newest
// line at the bottom, pause/resume, at most KEEP lines in the page (the oldest go).
import { field, h, replace } from '../dom.js';
import { followEvents } from '../sse.js';

export const KEEP = 500;
const LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'];

function clock(ts) {
  const d = new Date(ts * 1000);
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function logLine(e) {
  const level = LEVELS[e.level] || String(e.level);
  const attrs = Object.entries(e.attributes || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  return h('li', { class: `log-line l-${level.toLowerCase()}`, 'data-level': level, 'data-source': e.source },
    h('span', { class: 'at' }, clock(e.timestamp)), ' ', h('span', { class: 'level' }, level.padEnd(5)), ' ',
    h('span', { class: 'source' }, e.source), ' ', h('span', { class: 'msg' }, e.message),
    attrs ? [' ', h('span', { class: 'attrs' }, attrs)] : null);
}

// Appends lines to a scrolling list, keeping the view at the bottom when it was there.
export function lineList(id, label) {
  const list = h('ol', { id, class: 'log', tabindex: '0', 'aria-label': label });
  return {
    list,
    add(items) {
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      list.append(...items);
      while (list.childElementCount > KEEP) list.firstElementChild.remove();
      if (atBottom) list.scrollTop = list.scrollHeight;
    },
  };
}

export default async function logsPage(main) {
  document.title = 'Logs · Appliance';
  const params = new URLSearchParams(location.search);
  const level = h('select', { name: 'level' }, LEVELS.map((l) => h('option', { value: l, selected: l === (params.get('level') || 'INFO').toUpperCase() }, l)));
  const source = h('input', { name: 'source', placeholder: 'any', list: 'log-sources', value: params.get('source') || '', autocomplete: 'off' });
  const sources = h('datalist', { id: 'log-sources' }, ['core', 'http', 'ssh'].map((s) => h('option', { value: s })));
  const apply = h('button', { type: 'submit' }, 'Apply');
  const pause = h('button', { type: 'button', class: 'secondary', id: 'log-pause', 'aria-pressed': 'false' }, 'Pause');
  const state = h('span', { class: 'badge', id: 'log-state' }, 'connecting');
  const note = h('p', { id: 'log-note', class: 'hint' });
  const lines = lineList('log-lines', 'Log lines, newest last');
  const form = h('form', { class: 'inline', id: 'log-filters' }, field('Minimum level', level), field('Source', source), sources, apply, pause);
  replace(main, h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, 'Logs'), state), form, note, lines.list);

  let stop = () => {};
  let paused = false;
  let held = [];
  const setNote = () => {
    note.textContent = `${paused ? `Paused: ${held.length} new line${held.length === 1 ? '' : 's'} held. ` : ''}The page keeps the last ${KEEP} lines.`;
  };
  const open = () => {
    stop();
    replace(lines.list);
    held = [];
    const query = new URLSearchParams({ level: level.value });
    if (source.value.trim()) query.set('source', source.value.trim());
    history.replaceState(null, '', `${location.pathname}?${query}`);
    stop = followEvents(`/sse/logs?${query}`, (entry) => {
      if (paused) {
        held.push(entry);
        if (held.length > KEEP) held.shift();
        setNote();
      } else lines.add([logLine(entry)]);
    }, {
      onState: (s) => { state.textContent = s; },
      onRefused: (error) => { note.className = 'error'; note.textContent = error.message; },
    });
    note.className = 'hint';
    setNote();
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); open(); });
  level.addEventListener('change', open);
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) { lines.add(held.map(logLine)); held = []; }
    setNote();
  });
  open();
  return () => stop();
}
