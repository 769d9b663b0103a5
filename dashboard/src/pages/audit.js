// Audit: everyone's audit trail (GET /admin/audit, docs/accounts.md "Audit trail"),
// newest first; filters (event, user, since/until) and pages by `next_before`.
import { get } from '../api.js';
import { eventCell, eventSelect } from '../audit_events.js';
import { field, h, humanDate, replace } from '../dom.js';
import { table, turns } from '../ui.js';

const seconds = (input) => (input.value ? String(Math.floor(new Date(input.value).getTime() / 1000)) : '');

export default async function auditPage(main) {
  document.title = 'Audit · Appliance';
  const event = eventSelect('audit-event', '', 'any');
  const user = h('select', { name: 'user' }, h('option', { value: '' }, 'anyone'));
  const since = h('input', { name: 'since', type: 'datetime-local', step: 1 });
  const until = h('input', { name: 'until', type: 'datetime-local', step: 1 });
  const size = h('select', { name: 'limit' }, [10, 50, 100, 500].map((n) => h('option', { value: n, selected: n === 50 }, String(n))));
  const form = h('form', { class: 'inline', id: 'audit-filters' }, field('Event', event), field('User', user),
    field('Since', since), field('Until', until), field('Per page', size), h('button', { type: 'submit' }, 'Show'));
  const box = h('div', { id: 'audit' }, h('p', { class: 'loading' }, 'Loading…'));
  const newer = h('button', { type: 'button', class: 'secondary', id: 'audit-newer' }, 'Newer');
  const older = h('button', { type: 'button', class: 'secondary', id: 'audit-older' }, 'Older');
  const where = h('span', { id: 'audit-page', class: 'hint' });
  replace(main, h('h1', { tabindex: '-1' }, 'Audit'), form, box, h('div', { class: 'actions' }, newer, older, where));

  let pages = [undefined]; // the `before` of each page shown so far; the last is this one
  let next = null;
  const names = new Map();
  const turn = turns();
  const draw = async () => {
    const current = turn();
    const query = new URLSearchParams({ limit: size.value });
    for (const [k, v] of [['event', event.value], ['user', user.value], ['since', seconds(since)], ['until', seconds(until)],
      ['before', pages[pages.length - 1] ?? '']]) if (v) query.set(k, v);
    newer.disabled = true;
    older.disabled = true;
    try {
      const r = await get(`/admin/audit?${query}`);
      if (!current()) return;
      next = r.next_before ?? null;
      replace(box, table(['When', 'Event', 'Outcome', 'By', 'About', 'Target', 'Address'], r.events.map((e) => h('tr', { 'data-id': e.id, 'data-event': e.event },
        h('td', {}, humanDate(e.at)), eventCell(e), h('td', { class: `outcome-${e.outcome}` }, e.outcome),
        h('td', {}, e.actor || '—'), h('td', {}, names.get(e.user_id) || e.user_id || '—'), h('td', {}, e.target || '—'),
        h('td', {}, e.address || '—'))), 'No events.'));
      where.textContent = `Page ${pages.length}${next === null ? ' (the last)' : ''}`;
      newer.disabled = pages.length === 1;
      older.disabled = next === null;
    } catch (error) {
      if (current()) { replace(box, h('p', { class: 'error' }, error.message)); where.textContent = ''; }
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); pages = [undefined]; draw(); });
  older.addEventListener('click', () => { pages.push(next); draw(); });
  newer.addEventListener('click', () => { pages.pop(); draw(); });
  try {
    for (const u of await get('/admin/users')) {
      names.set(u.user_id, u.username);
      user.append(h('option', { value: u.user_id }, u.username));
    }
  } catch { /* a non-admin: the trail below says why */ }
  await draw();
}
