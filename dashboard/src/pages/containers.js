import { del, get, post } from '../api.js';
import { badge, describeType, quota } from '../compute.js';
import { h, humanDate, replace } from '../dom.js';
import { watchStatus } from '../status.js';
import { act, confirmDialog, say, sayError, table } from '../ui.js';

export default async function containersPage(main) {
  document.title = 'Containers · Appliance';
  const count = h('p', { class: 'quota', id: 'quota' });
  const list = h('div', { id: 'containers' }, h('p', { class: 'loading' }, 'Loading…'));
  replace(main,
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, 'Containers'),
      h('a', { href: '/compute/containers/new', 'data-page': '', class: 'button', id: 'new-container' }, 'Create container')),
    count, list);
  let containers = [];
  let listed = false; // the status socket's snapshot came
  let max = null; // GET /compute/quota; the count is the live list's
  const drawCount = () => { if (listed && max !== null) count.textContent = quota(containers.length, max); };

  const draw = () => {
    listed = true;
    drawCount();
    replace(list, table(['Name', 'Status', 'Type', 'Host name', 'Created', 'Actions'], containers.map((c) => {
      const start = h('button', { type: 'button', class: 'secondary', disabled: c.status !== 'stopped' && c.status !== 'error',
        onclick: () => act(start, `Starting ${c.name}…`, () => post(`/compute/containers/${c.id}/start`), `${c.name} is starting.`) }, 'Start');
      const stop = h('button', { type: 'button', class: 'secondary', disabled: c.status !== 'running',
        onclick: () => act(stop, `Stopping ${c.name}…`, () => post(`/compute/containers/${c.id}/stop`), `${c.name} is stopping.`) }, 'Stop');
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${c.name}`,
        onclick: async () => {
          if (!(await confirmDialog(`Delete container ${c.name}? Its volume and data are removed.`))) return;
          await act(remove, `Deleting ${c.name}…`, () => del(`/compute/containers/${c.id}`), `${c.name} deleted.`);
        } }, 'Delete');
      return h('tr', { 'data-id': c.id },
        h('td', {}, h('a', { href: `/compute/containers/${c.id}`, 'data-page': '' }, c.name)),
        h('td', {}, badge(c.status)), h('td', {}, describeType(c.instance_type)),
        h('td', {}, c.hostname), h('td', {}, humanDate(c.created_at)),
        h('td', {}, h('div', { class: 'actions' }, start, stop, remove)));
    }), 'No containers yet. Create one to get a machine with SSH and a terminal.'));
  };

  const unwatch = watchStatus(async (message) => {
    if (message.type === 'containers') {
      containers = message.data;
      draw();
    } else if (message.type === 'container_status') {
      const { container_id: id, status } = message.data;
      const known = containers.find((c) => c.id === id);
      if (status === 'deleted') containers = containers.filter((c) => c.id !== id);
      else if (known) known.status = status;
      else {
        // a new container's changes (pending, running, ...) can come before its GET answers: add it once
        let fetched;
        try { fetched = await get(`/compute/containers/${id}`); } catch { return; }
        const now = containers.find((c) => c.id === id);
        if (now) now.status = fetched.status;
        else containers.push(fetched);
      }
      draw();
    }
  });
  get('/compute/quota').then((q) => { max = q.max_containers; drawCount(); }, sayError);
  say('');
  return unwatch;
}
