// Your profile (display name) and password (docs/accounts.md "Self-service settings").
import { put, session } from '../api.js';
import { field, h, replace } from '../dom.js';
import { act, say } from '../ui.js';
import { settingsNav } from './settings_nav.js';

function profileForm(user) {
  const name = h('input', { name: 'display_name', required: true, maxlength: 128, autocomplete: 'name', value: user.display_name || '' });
  const save = h('button', { type: 'submit' }, 'Save');
  const form = h('form', { class: 'card wide', id: 'profile-form' }, h('h2', {}, 'Profile'),
    h('dl', { class: 'facts' }, h('dt', {}, 'Username'), h('dd', {}, user.username), h('dt', {}, 'User id'), h('dd', {}, h('code', {}, user.user_id))),
    field('Display name', name, 'Shown in the header and to admins.'), save);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const done = await act(save, 'Saving…', () => put('/api/settings/profile', { display_name: name.value.trim() }),
      (r) => `Display name changed to ${r.display_name}.`);
    if (!done) return;
    session.set({ ...session.get(), display_name: done.display_name });
    const who = document.querySelector('header .who');
    if (who) who.textContent = done.display_name;
  });
  return form;
}

function passwordForm(user) {
  const current = h('input', { name: 'current_password', type: 'password', required: true, autocomplete: 'current-password' });
  const fresh = h('input', { name: 'new_password', type: 'password', required: true, autocomplete: 'new-password' });
  const again = h('input', { name: 'confirm_password', type: 'password', required: true, autocomplete: 'new-password' });
  const change = h('button', { type: 'submit' }, 'Change password');
  // the username for password managers, which file the new password under it
  const form = h('form', { class: 'card wide', id: 'password-form' }, h('h2', {}, 'Password'),
    h('input', { type: 'text', name: 'username', value: user.username, autocomplete: 'username', hidden: true }),
    field('Current password', current), field('New password', fresh), field('New password again', again),
    h('p', { class: 'hint' }, 'Changing it signs you out everywhere else: every other session ends at once. API tokens keep working.'),
    change);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (fresh.value !== again.value) { say('The new passwords differ: type the same one twice.', 'error'); again.focus(); return; }
    const done = await act(change, 'Changing password…', () => put('/api/settings/password', { current_password: current.value, new_password: fresh.value }),
      'Password changed. Your other sessions were ended; this one stays signed in.');
    if (done) form.reset();
  });
  return form;
}

export default async function profilePage(main, _params, user) {
  document.title = 'Profile · Appliance';
  replace(main, settingsNav(), h('h1', { tabindex: '-1' }, 'Profile and password'), profileForm(user), passwordForm(user));
}
