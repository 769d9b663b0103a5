// Your audit trail (GET /api/settings/audit, docs/accounts.md "Audit trail"): newest
// first, a filter by event (kept in the URL), older pages by `next_before`.
import { get } from '../api.js';
import { h, humanDate, replace } from '../dom.js';
import { navigate } from '../router.js';
import { say, sayError, tableWrap } from '../ui.js';
import { settingsNav } from './settings_nav.js';

const PAGE = 20;
// event -> [what it says on success, on failure]
const EVENTS = {
  login: ['Signed in', 'Sign-in failed'],
  logout: ['Signed out'],
  'password.changed': ['Password changed', 'Password change refused: wrong current password'],
  'password.reset': ['Password reset by an admin'],
  'session.ended': ['Session ended'],
  'profile.updated': ['Profile updated'],
  '2fa.enabled': ['Authenticator app turned on'],
  '2fa.disabled': ['Authenticator app turned off'],
  '2fa.removed': ['Second factors removed by an admin'],
  '2fa.key_added': ['Security key added'],
  '2fa.key_renamed': ['Security key renamed'],
  '2fa.key_removed': ['Security key deleted'],
  '2fa.key_used': ['Security key used'],
  'token.created': ['API token created'],
  'token.deleted': ['API token deleted'],
  'service_account.created': ['Service account created'],
  'service_account.scopes_changed': ['Service account scopes changed'],
  'service_account.deleted': ['Service account deleted'],
  'user.created': ['Account created'],
  'user.deleted': ['Account deleted'],
  'user.admin_granted': ['Made an admin'],
  'user.admin_revoked': ['Admin rights removed'],
  'container.created': ['Container created'],
  'container.deleted': ['Container deleted'],
  'namespace.created': ['Namespace created'],
  'namespace.deleted': ['Namespace deleted'],
};

export function describeEvent(e) {
  const [ok, failed] = EVENTS[e.event] || [e.event];
  return e.outcome === 'failure' ? (failed || `${ok} (failed)`) : ok;
}

function eventRow(e, me) {
  const by = e.actor_id && e.actor_id !== me ? ` by ${e.actor || e.actor_id}` : (!e.actor_id ? ' by someone not signed in' : '');
  return h('tr', { 'data-id': e.id, 'data-event': e.event },
    h('td', {}, humanDate(e.at, true)),
    h('td', { class: e.outcome === 'failure' ? 'error' : null }, describeEvent(e), h('br'), h('small', { class: 'hint' }, h('code', {}, e.event))),
    h('td', {}, e.target === me ? 'your account' : (e.target ? h('code', {}, e.target) : ''), by),
    h('td', {}, e.address || '—'),
    h('td', {}, e.outcome === 'failure' ? 'Failed' : 'OK'));
}

export default async function activityPage(main, _params, user) {
  document.title = 'Activity · Appliance';
  const chosen = new URLSearchParams(location.search).get('event') || '';
  const filter = h('select', { id: 'event-filter', name: 'event' }, h('option', { value: '' }, 'All events'),
    Object.keys(EVENTS).map((e) => h('option', { value: e, selected: e === chosen }, `${EVENTS[e][0]} (${e})`)));
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
