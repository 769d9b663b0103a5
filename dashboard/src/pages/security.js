// Account security (docs/accounts.md): security keys (add, rename, delete) and
// the authenticator-app code (TOTP) with its recovery codes.
import { get, post } from '../api.js';
import { field, h, humanDate, replace } from '../dom.js';
import { act, confirmDialog, say, sayError, table } from '../ui.js';
import { createCredential } from '../webauthn.js';
import { settingsNav } from './settings_nav.js';

const TYPES = { platform: 'Built-in', 'cross-platform': 'Security key' };

function keyRow(k, draw) {
  const rename = h('button', { type: 'button', class: 'secondary', 'aria-label': `Rename key ${k.name}`, onclick: async () => {
    const name = window.prompt(`New name for ${k.name}`, k.name);
    if (!name || name.trim() === k.name) return;
    if (await act(rename, 'Renaming key…', () => post('/api/settings/keys/rename', { id: k.id, name: name.trim() }), 'Key renamed.')) draw();
  } }, 'Rename');
  const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete key ${k.name}`, onclick: async () => {
    if (!(await confirmDialog(`Delete security key ${k.name}? It will no longer sign you in.`))) return;
    if (await act(remove, 'Deleting key…', () => post('/api/settings/keys/delete', { id: k.id }), `Key ${k.name} deleted.`)) draw();
  } }, 'Delete');
  return h('tr', { 'data-id': k.id }, h('td', {}, k.name), h('td', {}, TYPES[k.authenticator_type] || 'Unknown'),
    h('td', {}, humanDate(k.created_at)), h('td', {}, humanDate(k.last_used_at)), h('td', { class: 'actions' }, rename, ' ', remove));
}

function keysSection() {
  const list = h('div', { id: 'security-keys' });
  const name = h('input', { name: 'key-name', autocomplete: 'off', maxlength: 64, placeholder: 'Security key' });
  const add = h('button', { type: 'submit', id: 'add-key' }, 'Add security key');
  const form = h('form', { class: 'card wide', id: 'add-key-form' }, h('h3', {}, 'Add a key'), field('Name', name), add);
  const draw = async () => {
    let keys = [];
    try { ({ keys } = await get('/api/settings/keys')); } catch (error) { sayError(error); }
    replace(list, table(['Name', 'Type', 'Added', 'Last used', ''], keys.map((k) => keyRow(k, draw)), 'No security keys yet.'));
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const added = await act(add, 'Touch your security key…', async () => {
      const { options, state } = await post('/api/settings/keys/add/begin');
      const credential = await createCredential(options);
      return post('/api/settings/keys/add/finish', { state, credential, name: name.value.trim() });
    }, 'Security key added.');
    if (added) { form.reset(); draw(); }
  });
  return [h('section', { 'aria-labelledby': 'keys-title' }, h('h2', { id: 'keys-title' }, 'Security keys'),
    h('p', {}, 'A key (or your device\'s passkey) is asked for after your password when you sign in.'), list, form), draw];
}

function totpSection() {
  const body = h('div', { id: 'totp' });
  const start = h('button', { type: 'button', id: 'totp-begin' }, 'Set up an authenticator app');
  const code = h('input', { name: 'totp-code', autocomplete: 'one-time-code', inputmode: 'numeric', required: true });
  const enable = h('button', { type: 'submit' }, 'Turn on');
  const password = h('input', { name: 'totp-password', type: 'password', autocomplete: 'current-password', required: true });
  const disable = h('button', { type: 'submit', class: 'danger' }, 'Turn off');
  const disableForm = h('form', { id: 'totp-disable' }, field('Current password', password), disable);
  disableForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (await act(disable, 'Turning off…', () => post('/api/settings/totp/disable', { current_password: password.value }), 'Authenticator app turned off.')) {
      await draw();
    }
  });
  start.addEventListener('click', async () => {
    const secret = await act(start, 'Making a secret…', () => post('/api/settings/totp/begin'));
    if (!secret) { replace(body, h('p', {}, 'An authenticator app is on.'), disableForm); return; }
    const form = h('form', { id: 'totp-enable' },
      h('p', {}, 'Add this secret to your authenticator app, then enter the code it shows.'),
      h('p', {}, h('code', { id: 'totp-secret' }, secret.secret)), h('p', {}, h('code', { class: 'wrap' }, secret.otpauth_uri)),
      field('Code from the app', code), enable);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const on = await act(enable, 'Checking the code…', () => post('/api/settings/totp/enable', { code: code.value.trim() }), 'Authenticator app turned on.');
      if (on) {
        replace(body, h('p', {}, 'Recovery codes (each works once; shown only now):'),
          h('ul', { id: 'recovery-codes' }, on.recovery_codes.map((c) => h('li', {}, h('code', {}, c)))), disableForm);
      }
    });
    replace(body, form);
    say('Scan or type the secret, then enter a code.');
  });
  // GET /api/settings/totp: on (since when, codes left) shows the way to turn it off; off, the set-up
  const draw = async () => {
    try {
      const status = await get('/api/settings/totp');
      if (!status.enabled) { replace(body, h('p', { id: 'totp-status' }, 'Off.'), start); return; }
      replace(body, h('p', { id: 'totp-status' }, `On since ${humanDate(status.enabled_at)}; `,
        `${status.recovery_codes_left} of 10 recovery codes left.`), disableForm);
    } catch (error) { replace(body, h('p', { class: 'error' }, error.message)); }
  };
  return [h('section', { 'aria-labelledby': 'totp-title' }, h('h2', { id: 'totp-title' }, 'Authenticator app'), body), draw];
}

export default async function securityPage(main) {
  document.title = 'Security · Appliance';
  const [keys, drawKeys] = keysSection();
  const [totp, drawTotp] = totpSection();
  replace(main, settingsNav(), h('h1', { tabindex: '-1' }, 'Security'), keys, totp);
  await Promise.all([drawKeys(), drawTotp()]);
}
