import { del, get, post } from '../api.js';
import { copyText, field, h, humanDate, replace } from '../dom.js';
import { act, confirmDialog, sayError, table } from '../ui.js';

const RESOURCES = { compute: ['containers', 'keys'], storage: ['namespaces', 'files'] };
const ACTIONS = ['create', 'read', 'update', 'delete'];
let rowCount = 0;

function scopeRow(onRemove) {
  const n = (rowCount += 1);
  const service = h('select', { 'aria-label': `Scope ${n} service` }, Object.keys(RESOURCES).map((s) => h('option', { value: s }, s)));
  const resource = h('select', { 'aria-label': `Scope ${n} resource` });
  const fill = () => replace(resource, h('option', { value: '' }, 'everything'),
    RESOURCES[service.value].map((r) => h('option', { value: r }, r)));
  fill();
  service.addEventListener('change', fill);
  const id = h('input', { 'aria-label': `Scope ${n} resource id (optional)`, placeholder: 'id (optional)', size: 12 });
  const actions = ACTIONS.map((a) => {
    const box = h('input', { type: 'checkbox', value: a, id: `scope-${n}-${a}`, checked: a === 'read' });
    return h('span', { class: 'check' }, box, h('label', { for: box.id }, a));
  });
  const row = h('fieldset', { class: 'scope' }, h('legend', {}, `Scope ${n}`), service, resource, id, actions,
    h('button', { type: 'button', class: 'secondary', onclick: () => onRemove(row) }, 'Remove'));
  row.scope = (uid) => {
    let key = `${service.value}.${uid}`;
    if (resource.value) key += `.${resource.value}`;
    if (resource.value && id.value.trim()) key += `.${id.value.trim()}`;
    return [key, [...row.querySelectorAll('input[type=checkbox]:checked')].map((b) => b.value)];
  };
  return row;
}

export default async function tokensPage(main, _params, user) {
  document.title = 'API tokens · Appliance';
  const list = h('div', { id: 'tokens' });
  const shown = h('div', { id: 'new-token', 'aria-live': 'polite' });
  const name = h('input', { name: 'name', required: true, maxlength: 64, autocomplete: 'off' });
  const expiry = h('select', { name: 'expires_in' }, ['30d', '90d', '365d', 'never'].map((x) => h('option', { value: x, selected: x === '90d' }, x)));
  const scopes = h('div', { class: 'scopes' });
  const addScope = () => scopes.append(scopeRow((row) => row.remove()));
  addScope();
  const create = h('button', { type: 'submit' }, 'Create token');
  const form = h('form', { class: 'card wide', id: 'token-form' }, h('h2', {}, 'New token'),
    field('Name', name), field('Expires in', expiry), scopes,
    h('button', { type: 'button', class: 'secondary', onclick: addScope }, 'Add scope'), ' ', create);
  replace(main, h('h1', { tabindex: '-1' }, 'API tokens'), shown, list, form);

  const draw = async () => {
    let tokens = [];
    try { tokens = await get('/api/tokens'); } catch (error) { sayError(error); }
    replace(list, table(['Name', 'Scopes', 'Expires', 'Last used', ''], tokens.map((t) => {
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete token ${t.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete token ${t.name}? Programs using it stop working at once.`))) return;
        if (await act(remove, 'Deleting…', () => del(`/api/tokens/${t.id}`), `Token ${t.name} deleted.`)) draw();
      } }, 'Delete');
      return h('tr', { 'data-id': t.id }, h('td', {}, t.name),
        h('td', {}, Object.entries(t.scopes || {}).map(([k, v]) => h('div', {}, h('code', {}, k), ` ${v.join(', ')}`))),
        h('td', {}, t.expires_at ? humanDate(t.expires_at) : 'never'), h('td', {}, humanDate(t.last_used_at)), h('td', {}, remove));
    }), 'No API tokens.'));
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), expires_in: expiry.value, scopes: {} };
    for (const row of scopes.querySelectorAll('.scope')) {
      const [key, actions] = row.scope(user.user_id);
      if (actions.length) body.scopes[key] = [...new Set([...(body.scopes[key] || []), ...actions])];
    }
    const made = await act(create, 'Creating token…', () => post('/api/tokens', body), (t) => `Token ${t.name} created.`);
    if (!made) return;
    const copy = h('button', { type: 'button', class: 'secondary', onclick: () => copyText(made.token, copy) }, 'Copy');
    replace(shown, h('div', { class: 'card notice' }, h('p', {}, h('strong', {}, 'Copy the token now: '), 'it is shown only once.'),
      h('div', { class: 'copy-row' }, h('code', { id: 'token-value' }, made.token), copy)));
    form.reset();
    draw();
  });
  await draw();
}
