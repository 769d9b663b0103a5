// Service accounts (docs/accounts.md): automation's own identity, with the scopes of
// the token scope builder; the list and a new one here, the rest on its own page.
import { get, post } from '../api.js';
import { field, h, humanDate, replace } from '../dom.js';
import { navigate } from '../router.js';
import { scopeBuilder, scopeList } from '../scopes.js';
import { act, say, sayError, table } from '../ui.js';
import { settingsNav } from './settings_nav.js';

export default async function serviceAccountsPage(main, _params, user) {
  document.title = 'Service accounts · Appliance';
  const list = h('div', { id: 'service-accounts' });
  const name = h('input', { name: 'sa-name', required: true, maxlength: 64, autocomplete: 'off' });
  const scopes = scopeBuilder();
  const create = h('button', { type: 'submit' }, 'Create service account');
  const form = h('form', { class: 'card wide', id: 'service-account-form' }, h('h2', {}, 'New service account'),
    field('Name', name), scopes.element, scopes.addButton, ' ', create);
  replace(main, settingsNav(), h('h1', { tabindex: '-1' }, 'Service accounts'),
    h('p', { class: 'hint' }, 'An identity for automation: its tokens can do what its scopes allow, and changing the scopes changes every token of it at once.'),
    list, form);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const made = await act(create, 'Creating service account…', () => post('/api/service-accounts', { name: name.value.trim(), scopes: scopes.scopes(user.user_id) }));
    if (!made) return;
    navigate(`/settings/service-accounts/${encodeURIComponent(made.id)}`);
    say(`Service account ${made.name} created: make a token for it below.`);
  });
  let accounts = [];
  try { accounts = await get('/api/service-accounts'); } catch (error) { sayError(error); }
  replace(list, table(['Name', 'Scopes', 'Tokens', 'Created'], accounts.map((a) => h('tr', { 'data-id': a.id },
    h('td', {}, h('a', { href: `/settings/service-accounts/${encodeURIComponent(a.id)}`, 'data-page': '' }, a.name)),
    h('td', {}, scopeList(a.scopes)), h('td', {}, String(a.token_count)), h('td', {}, humanDate(a.created_at)))), 'No service accounts.'));
}
