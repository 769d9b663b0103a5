import { del, get, post } from '../api.js';
import { copyText, field, h, humanDate, replace } from '../dom.js';
import { scopeBuilder, scopeList } from '../scopes.js';
import { act, confirmDialog, sayError, table } from '../ui.js';

export default async function tokensPage(main, _params, user) {
  document.title = 'API tokens · Appliance';
  const list = h('div', { id: 'tokens' });
  const shown = h('div', { id: 'new-token', 'aria-live': 'polite' });
  const name = h('input', { name: 'name', required: true, maxlength: 64, autocomplete: 'off' });
  const expiry = h('select', { name: 'expires_in' }, ['30d', '90d', '365d', 'never'].map((x) => h('option', { value: x, selected: x === '90d' }, x)));
  const scopes = scopeBuilder();
  const create = h('button', { type: 'submit' }, 'Create token');
  const form = h('form', { class: 'card wide', id: 'token-form' }, h('h2', {}, 'New token'),
    field('Name', name), field('Expires in', expiry), scopes.element, scopes.addButton, ' ', create);
  replace(main, h('h1', { tabindex: '-1' }, 'API tokens'), shown, list, form);

  const draw = async () => {
    let tokens = [];
    try { tokens = await get('/api/tokens'); } catch (error) { sayError(error); }
    replace(list, table(['Name', 'Scopes', 'Expires', 'Last used', ''], tokens.map((t) => {
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete token ${t.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete token ${t.name}? Programs using it stop working at once.`))) return;
        if (await act(remove, 'Deleting…', () => del(`/api/tokens/${t.id}`), `Token ${t.name} deleted.`)) draw();
      } }, 'Delete');
      // a service account's token: its scopes are the account's, changed on the account's page
      const account = t.service_account_id ? h('small', { class: 'hint agent' }, 'of a ',
        h('a', { href: `/settings/service-accounts/${encodeURIComponent(t.service_account_id)}`, 'data-page': '' }, 'service account')) : null;
      return h('tr', { 'data-id': t.id }, h('td', {}, t.name, account),
        h('td', {}, scopeList(t.scopes)),
        h('td', {}, t.expires_at ? humanDate(t.expires_at) : 'never'), h('td', {}, humanDate(t.last_used_at)), h('td', {}, remove));
    }), 'No API tokens.'));
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), expires_in: expiry.value, scopes: scopes.scopes(user.user_id) };
    const made = await act(create, 'Creating token…', () => post('/api/tokens', body), (t) => `Token ${t.name} created.`);
    if (!made) return;
    const copy = h('button', { type: 'button', class: 'secondary', onclick: () => copyText(made.token, copy) }, 'Copy');
    replace(shown, h('div', { class: 'card notice' }, h('p', {}, h('strong', {}, 'Copy the token now: '), 'it is shown only once.'),
      h('div', { class: 'copy-row' }, h('code', { id: 'token-value' }, made.token), copy)));
    form.reset();
    scopes.reset();
    draw();
  });
  await draw();
}
