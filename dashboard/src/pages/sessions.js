// Your live sessions (GET /api/settings/sessions): end one, or all but this one.
import { del, get } from '../api.js';
import { h, humanDate, replace } from '../dom.js';
import { act, confirmDialog, sayError, table } from '../ui.js';
import { settingsNav } from './settings_nav.js';

// "Chrome 131 on Linux" from a User-Agent; the whole string stays beside it.
export function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = [['Edg/', 'Edge'], ['OPR/', 'Opera'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari'],
    ['curl/', 'curl'], ['python-requests/', 'Python requests'], ['appliance', 'appliance CLI']].find(([mark]) => ua.includes(mark));
  const os = [['Android', 'Android'], ['iPhone', 'iOS'], ['iPad', 'iPadOS'], ['Windows', 'Windows'], ['Mac OS X', 'macOS'],
    ['CrOS', 'ChromeOS'], ['Linux', 'Linux']].find(([mark]) => ua.includes(mark));
  if (!browser) return ua.split(/[ /]/)[0] || 'Unknown device';
  const version = ua.split(browser[0])[1]?.split(/[. ]/)[0];
  return `${browser[1]}${version && /^\d+$/.test(version) ? ` ${version}` : ''}${os ? ` on ${os[1]}` : ''}`;
}

export default async function sessionsPage(main) {
  document.title = 'Sessions · Appliance';
  const list = h('div', { id: 'sessions' });
  const endOthers = h('button', { type: 'button', class: 'danger', id: 'end-others' }, 'End all other sessions');
  replace(main, settingsNav(), h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, 'Sessions'), h('div', { class: 'actions' }, endOthers)),
    h('p', { class: 'hint' }, 'Where you are signed in. Ending a session signs that browser or program out at once.'), list);

  const draw = async () => {
    let sessions = [];
    try { sessions = await get('/api/settings/sessions'); } catch (error) { sayError(error); }
    endOthers.disabled = !sessions.some((s) => !s.is_current);
    replace(list, table(['Device', 'Address', 'Signed in', 'Last seen', ''], sessions.map((s) => {
      const device = describeAgent(s.user_agent);
      const end = s.is_current ? h('span', { class: 'badge s-running' }, 'This session')
        : h('button', { type: 'button', class: 'danger', 'aria-label': `End session ${device} from ${s.ip_address}`, onclick: async () => {
          if (!(await confirmDialog(`End the session of ${device} from ${s.ip_address}? It is signed out at once.`, 'End session'))) return;
          if (await act(end, 'Ending session…', () => del(`/api/settings/sessions/${encodeURIComponent(s.id)}`), 'Session ended.')) draw();
        } }, 'End');
      return h('tr', { 'data-id': s.id, class: s.is_current ? 'current' : null },
        h('td', {}, h('div', {}, device), h('small', { class: 'hint agent' }, s.user_agent || '')),
        h('td', {}, s.ip_address), h('td', {}, humanDate(s.created_at)), h('td', {}, humanDate(s.last_seen_at)), h('td', {}, end));
    }), 'No live sessions.'));
  };
  endOthers.addEventListener('click', async () => {
    if (!(await confirmDialog('End every session but this one? Those browsers and programs are signed out at once.', 'End sessions'))) return;
    if (await act(endOthers, 'Ending the other sessions…', () => del('/api/settings/sessions'), 'Every other session ended.')) draw();
  });
  await draw();
}
