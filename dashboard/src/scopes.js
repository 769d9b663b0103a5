// The scope builder of API tokens and service accounts (docs/api.md "Scopes"):
// rows of service, resource, optional id and actions -> {"compute.<uid>.containers": ["read"]}.
import { h, replace } from './dom.js';

const RESOURCES = { compute: ['containers', 'keys'], storage: ['namespaces', 'files'] };
const ACTIONS = ['create', 'read', 'update', 'delete'];
let rowCount = 0;

// One row; `initial` is [key, actions] of an existing scope (a namespace id may hold dots).
function scopeRow(onRemove, initial) {
  const n = (rowCount += 1);
  const [key = '', chosen = ['read']] = initial || [];
  const [svc, , res = '', ...rest] = key.split('.');
  const service = h('select', { 'aria-label': `Scope ${n} service` }, Object.keys(RESOURCES).map((s) => h('option', { value: s, selected: s === svc }, s)));
  const resource = h('select', { 'aria-label': `Scope ${n} resource` });
  const fill = () => replace(resource, h('option', { value: '' }, 'everything'),
    RESOURCES[service.value].map((r) => h('option', { value: r, selected: r === res }, r)));
  fill();
  service.addEventListener('change', fill);
  const id = h('input', { 'aria-label': `Scope ${n} resource id (optional)`, placeholder: 'id (optional)', size: 12, value: rest.join('.') });
  const actions = ACTIONS.map((a) => {
    const box = h('input', { type: 'checkbox', value: a, id: `scope-${n}-${a}`, checked: chosen.includes(a) });
    return h('span', { class: 'check' }, box, h('label', { for: box.id }, a));
  });
  const row = h('fieldset', { class: 'scope' }, h('legend', {}, `Scope ${n}`), service, resource, id, actions,
    h('button', { type: 'button', class: 'secondary', onclick: () => onRemove(row) }, 'Remove'));
  row.scope = (uid) => {
    let k = `${service.value}.${uid}`;
    if (resource.value) k += `.${resource.value}`;
    if (resource.value && id.value.trim()) k += `.${id.value.trim()}`;
    return [k, [...row.querySelectorAll('input[type=checkbox]:checked')].map((b) => b.value)];
  };
  return row;
}

// {element, addButton, scopes(uid), reset()}: rows to start with from `initial` (a scopes
// object), or one read row; scopes() merges rows with the same key and drops empty ones.
export function scopeBuilder(initial) {
  const element = h('div', { class: 'scopes' });
  const add = (scope) => element.append(scopeRow((row) => row.remove(), scope));
  const reset = () => {
    replace(element);
    const entries = Object.entries(initial || {});
    if (entries.length) entries.forEach(add); else add();
  };
  reset();
  const addButton = h('button', { type: 'button', class: 'secondary', onclick: () => add() }, 'Add scope');
  const scopes = (uid) => {
    const out = {};
    for (const row of element.querySelectorAll('.scope')) {
      const [key, actions] = row.scope(uid);
      if (actions.length) out[key] = [...new Set([...(out[key] || []), ...actions])];
    }
    return out;
  };
  return { element, addButton, scopes, reset };
}

export function scopeList(scopes) {
  return Object.entries(scopes || {}).map(([k, v]) => h('div', {}, h('code', {}, k), ` ${v.join(', ')}`));
}
