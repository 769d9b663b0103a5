// The container's log on its page: GET /compute/containers/{id}/logs (Server-Sent
// Events: the last lines of the guest's init log, then new ones, until it stops).
import { h } from '../dom.js';
import { readEvents } from '../sse.js';
import { lineList } from './logs.js';

export function containerLog(base, name) {
  const lines = lineList('container-log', `Log of ${name}, newest last`);
  lines.list.classList.add('short');
  const note = h('p', { id: 'container-log-note', class: 'hint' }, 'The guest\'s init log: its last lines, then new ones as they come.');
  const button = h('button', { type: 'button', class: 'secondary', id: 'show-log' }, 'Show log');
  let control = null;
  const stop = () => { if (control) control.abort(); control = null; };
  const show = async () => {
    if (control) {
      stop();
      button.textContent = 'Show log';
      return;
    }
    control = new AbortController();
    const mine = control;
    button.textContent = 'Stop following';
    lines.list.replaceChildren();
    note.className = 'hint';
    note.textContent = 'Reading the log…';
    try {
      await readEvents(`${base}/logs`, (e) => {
        note.textContent = 'Following the log.';
        lines.add([h('li', { class: e.backlog ? 'backlog' : 'live' }, e.line)]);
      }, mine.signal);
      if (!mine.signal.aborted) note.textContent = 'The log ended: the container stopped.';
    } catch (error) {
      note.className = 'error';
      note.textContent = error.message;
    }
    if (control === mine) { control = null; button.textContent = 'Show log'; }
  };
  button.addEventListener('click', show);
  const section = h('section', { 'aria-labelledby': 'log-h' },
    h('div', { class: 'title-row' }, h('h2', { id: 'log-h' }, 'Log'), button), note, lines.list);
  return { section, stop };
}
