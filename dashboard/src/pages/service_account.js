// One service account: its scopes (edited with the token scope builder), its tokens
// (a new one is shown once), and deleting it (its tokens stop at once).
import { del, get, post, put } from '../api.js';
import { copyText, field, h, humanDate, replace } from '../dom.js';
import { navigate } from '../router.js';
import { scopeBuilder } from '../scopes.js';
import { act, confirmDialog, say, sayError, table } from '../ui.js';
import { settingsNav } from './settings_nav.js';

function tokensSection(account) {
  const path = `/api/service-accounts/${encodeURIComponent(account.id)}/tokens`;
  const list = h('div', { id: 'sa-tokens' });
  const shown = h('div', { id: 'new-token', 'aria-live': 'polite' });
  const name = h('input', { name: 'token-name', required: true, maxlength: 64, autocomplete: 'off' });
  const expiry = h('select', { name: 'expires_in' }, ['30d', '90d', '365d', 'never'].map((x) => h('option', { value: x, selected: x === '90d' }, x)));
  const create = h('button', { type: 'submit' }, 'Create token');
  const form = h('form', { class: 'inline', id: 'sa-token-form' }, field('Token name', name), field('Expires in', expiry), create);
  const draw = async () => {
    let tokens = [];
    try { tokens = await get(path); } catch (error) { sayError(error); }
    replace(list, table(['Name', 'Created', 'Expires', 'Last used', ''], tokens.map((t) => {
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete token ${t.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete token ${t.name}? Programs using it stop working at once.`))) return;
        if (await act(remove, 'Deleting…', () => del(`/api/tokens/${t.id}`), `Token ${t.name} deleted.`)) draw();
      } }, 'Delete');
      return h('tr', { 'data-id': t.id }, h('td', {}, t.name), h('td', {}, humanDate(t.created_at)),
        h('td', {}, t.expires_at ? humanDate(t.expires_at) : 'never'), h('td', {}, humanDate(t.last_used_at)), h('td', {}, remove));
    }), 'No tokens yet.'));
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const made = await act(create, 'Creating token…', () => post(path, { name: name.value.trim(), expires_in: expiry.value }), (t) => `Token ${t.name} created.`);
    if (!made) return;
    const copy = h('button', { type: 'button', class: 'secondary', onclick: () => copyText(made.token, copy) }, 'Copy');
    replace(shown, h('div', { class: 'card notice' }, h('p', {}, h('strong', {}, 'Copy the token now: '), 'it is shown only once.'),
      h('div', { class: 'copy-row' }, h('code', { id: 'token-value' }, made.token), copy)));
    form.reset();
    draw();
  });
  return [h('section', { 'aria-labelledby': 'sa-tokens-title' }, h('h2', { id: 'sa-tokens-title' }, 'Tokens'), shown, list, form), draw];
}

function scopesSection(account, user) {
  const scopes = scopeBuilder(account.scopes);
  const save = h('button', { type: 'submit' }, 'Save scopes');
  const form = h('form', { class: 'card wide', id: 'sa-scopes-form' }, h('h2', {}, 'Scopes'),
    h('p', { class: 'hint' }, 'Every token of this account has these on its next request; streams a narrower scope no longer covers close.'),
    scopes.element, scopes.addButton, ' ', save);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await act(save, 'Saving scopes…', () => put(`/api/service-accounts/${encodeURIComponent(account.id)}/scopes`, { scopes: scopes.scopes(user.user_id) }), 'Scopes saved.');
  });
  return form;
}

export default async function serviceAccountPage(main, params, user) {
  document.title = 'Service account · Appliance';
  let account;
  try { account = await get(`/api/service-accounts/${encodeURIComponent(params.id)}`); } catch (error) {
    replace(main, settingsNav(), h('h1', { tabindex: '-1' }, 'Service account'), h('p', { class: 'error' }, error.message));
    return;
  }
  document.title = `${account.name} · Service accounts · Appliance`;
  const remove = h('button', { type: 'button', class: 'danger', id: 'delete-sa' }, 'Delete service account');
  remove.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete service account ${account.name}? Its tokens stop working at once.`))) return;
    if (await act(remove, 'Deleting…', () => del(`/api/service-accounts/${encodeURIComponent(account.id)}`))) {
      navigate('/settings/service-accounts');
      say(`Service account ${account.name} deleted.`);
    }
  });
  const [tokens, drawTokens] = tokensSection(account);
  replace(main, settingsNav(),
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, account.name), h('div', { class: 'actions' }, remove)),
    h('dl', { class: 'facts' }, h('dt', {}, 'Id'), h('dd', {}, h('code', {}, account.id)), h('dt', {}, 'Created'), h('dd', {}, humanDate(account.created_at))),
    h('p', {}, h('a', { href: '/settings/service-accounts', 'data-page': '' }, 'All service accounts')),
    scopesSection(account, user), tokens);
  await drawTokens();
}
