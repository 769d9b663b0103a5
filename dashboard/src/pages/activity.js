// Your audit trail (GET /api/settings/audit, docs/accounts.md "Audit trail"): newest
// first, a filter by event (kept in the URL), older pages by `next_before`.
import { get } from '../api.js';
import { eventCell, eventSelect } from '../audit_events.js';
import { h, humanDate, replace } from '../dom.js';
import { navigate } from '../router.js';
import { say, sayError, tableWrap } from '../ui.js';
import { settingsNav } from './settings_nav.js';

const PAGE = 20;
function eventRow(e, me) {
  const by = e.actor_id && e.actor_id !== me ? ` by ${e.actor || e.actor_id}` : (!e.actor_id ? ' by someone not signed in' : '');
  return h('tr', { 'data-id': e.id, 'data-event': e.event },
    h('td', {}, humanDate(e.at, true)),
    eventCell(e),
    h('td', {}, e.target === me ? 'your account' : (e.target ? h('code', {}, e.target) : ''), by),
    h('td', {}, e.address || '—'),
    h('td', {}, e.outcome === 'failure' ? 'Failed' : 'OK'));
}

export default async function activityPage(main, _params, user) {
  document.title = 'Activity · Appliance';
  const chosen = new URLSearchParams(location.search).get('event') || '';
  const filter = eventSelect('event-filter', chosen, 'All events');
  filter.addEventListener('change', () => navigate(filter.value ? `/settings/activity?event=${encodeURIComponent(filter.value)}` : '/settings/activity'));
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', id: 'older', hidden: true }, 'Older events');
  const list = h('div', { id: 'activity' });
  replace(main, settingsNav(), h('h1', { tabindex: '-1' }, 'Activity'),
    h('p', { class: 'hint' }, 'What you did, and what was done to your account (a failed sign-in from elsewhere too), newest first.'),
    h('div', { class: 'field inline-field' }, h('label', { for: filter.id }, 'Event'), filter), list, more);

  let before = '';
  let shown = 0;
  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (chosen) query.set('event', chosen);
    if (before) query.set('before', before);
    let page;
    try { page = await get(`/api/settings/audit?${query}`); } catch (error) { sayError(error); return; }
    shown += page.events.length;
    body.append(...page.events.map((e) => eventRow(e, user.user_id)));
    if (!body.parentNode) {
      replace(list, shown ? tableWrap(h('table', {}, h('thead', {}, h('tr', {}, ['When', 'Event', 'Details', 'Address', 'Outcome'].map((x) => h('th', { scope: 'col' }, x)))), body))
        : h('p', { class: 'empty' }, chosen ? 'No such events.' : 'No activity yet.'));
    }
    before = page.next_before || '';
    more.hidden = !before;
    if (before || shown > PAGE) say(`${shown} events shown${before ? '; there are older ones' : ''}.`);
  };
  more.addEventListener('click', async () => { more.disabled = true; await load(); more.disabled = false; });
  await load();
}
