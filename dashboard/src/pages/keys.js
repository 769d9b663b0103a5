import { del, get, post } from '../api.js';
import { field, h, humanDate, replace } from '../dom.js';
import { act, confirmDialog, sayError, table } from '../ui.js';

export default async function keysPage(main) {
  document.title = 'SSH keys · Appliance';
  const list = h('div', { id: 'keys' });
  const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
  const key = h('textarea', { name: 'public_key', rows: 3, required: true, placeholder: 'ssh-ed25519 AAAA… you@laptop' });
  const file = h('input', { type: 'file', accept: '.pub,text/plain' });
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    key.value = (await f.text()).trim();
    if (!name.value) name.value = f.name.replace(/\.pub$/, '');
  });
  const add = h('button', { type: 'submit' }, 'Add key');
  const form = h('form', { class: 'card wide', id: 'key-form' }, h('h2', {}, 'Add a key'),
    field('Name', name), field('Public key', key, 'Paste the line of your .pub file, or choose the file below.'),
    field('…or from a file', file), add);
  replace(main, h('h1', { tabindex: '-1' }, 'SSH keys'), list, form);

  const draw = async () => {
    let keys = [];
    try { ({ ssh_keys: keys } = await get('/compute/ssh-keys')); } catch (error) { sayError(error); }
    replace(list, table(['Name', 'Fingerprint', 'Added', ''], keys.map((k) => {
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete key ${k.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete SSH key ${k.name}? Containers that have it keep it.`))) return;
        if (await act(remove, 'Deleting key…', () => del(`/compute/ssh-keys/${k.id}`), `Key ${k.name} deleted.`)) draw();
      } }, 'Delete');
      return h('tr', { 'data-id': k.id }, h('td', {}, k.name), h('td', {}, h('code', {}, k.fingerprint)),
        h('td', {}, humanDate(k.created_at)), h('td', {}, remove));
    }), 'No SSH keys yet.'));
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const made = await act(add, 'Adding key…', () => post('/compute/ssh-keys', { name: name.value.trim(), public_key: key.value.trim() }),
      (k) => `Key ${k.name} added (${k.fingerprint}).`);
    if (made) { form.reset(); draw(); }
  });
  await draw();
}
