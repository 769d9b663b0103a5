import { del, get, post, put } from '../api.js';
import { field, h, replace } from '../dom.js';
import { act, confirmDialog, sayError, table } from '../ui.js';

export const VISIBILITY = ['private', 'visible (by link)', 'public'];

export default async function namespacesPage(main, _params, user) {
  document.title = 'Files · Appliance';
  const list = h('div', { id: 'namespaces' });
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', autocomplete: 'off' });
  const visibility = h('select', { name: 'visibility' }, VISIBILITY.map((v, i) => h('option', { value: i }, v)));
  const create = h('button', { type: 'submit' }, 'Create namespace');
  const form = h('form', { class: 'inline', id: 'namespace-form' },
    field('Name', name, 'Letters, digits, . _ - (1-64).'), field('Visibility', visibility), create);
  replace(main, h('h1', { tabindex: '-1' }, 'Files'), h('p', {}, 'Namespaces hold files; open one to upload and download.'), list,
    h('h2', {}, 'New namespace'), form);

  const draw = async () => {
    let namespaces = [];
    try { namespaces = await get('/storage/namespaces'); } catch (error) { sayError(error); }
    replace(list, table(['Namespace', 'Files', 'Visibility', ''], namespaces.map((ns) => {
      const mine = ns.owner_id === user.user_id;
      const select = h('select', { 'aria-label': `Visibility of ${ns.name}`, disabled: !mine },
        VISIBILITY.map((v, i) => h('option', { value: i, selected: i === ns.visibility }, v)));
      select.addEventListener('change', () => act(select, 'Saving…',
        () => put(`/storage/namespaces/${encodeURIComponent(ns.name)}`, { visibility: Number(select.value) }),
        `${ns.name} is now ${VISIBILITY[select.value]}.`));
      const remove = mine ? h('button', { type: 'button', class: 'danger', 'aria-label': `Delete namespace ${ns.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete namespace ${ns.name} and its ${ns.count} files?`))) return;
        if (await act(remove, 'Deleting…', () => del(`/storage/namespaces/${encodeURIComponent(ns.name)}`), `${ns.name} deleted.`)) draw();
      } }, 'Delete') : null;
      return h('tr', {}, h('td', {}, h('a', { href: `/storage/files?namespace=${encodeURIComponent(ns.name)}`, 'data-page': '' }, ns.name)),
        h('td', {}, ns.count), h('td', {}, select), h('td', {}, remove));
    }), 'No namespaces.'));
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (await act(create, 'Creating…', () => post('/storage/namespaces', { name: name.value.trim(), visibility: Number(visibility.value) }),
      (ns) => `Namespace ${ns.name} created.`)) { form.reset(); draw(); }
  });
  await draw();
}
