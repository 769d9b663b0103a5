import { get, post } from '../api.js';
import { INSTANCE_TYPES, quota } from '../compute.js';
import { field, h, replace } from '../dom.js';
import { navigate } from '../router.js';
import { say, sayError } from '../ui.js';

// "8080" or "8080:80" per line -> [{port, target_port?}]
export function parseIngress(text) {
  return text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean).map((line) => {
    const [port, target] = line.split(':').map((x) => x.trim());
    if (!/^\d+$/.test(port) || (target !== undefined && !/^\d+$/.test(target))) {
      throw new Error(`ingress rule '${line}' must be PORT or PORT:TARGET_PORT`);
    }
    return target === undefined ? { port: Number(port) } : { port: Number(port), target_port: Number(target) };
  });
}

export const lines = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);

export default async function createPage(main) {
  document.title = 'Create container · Appliance';
  const name = h('input', { name: 'name', required: true, maxlength: 63, autocomplete: 'off' });
  const type = h('select', { name: 'instance_type' },
    INSTANCE_TYPES.map((t) => h('option', { value: t.name, selected: t.name === 'nano' },
      `${t.name} — ${t.cpus} CPU, ${t.memory_mb} MB memory, up to ${t.storage_max} GB disk`)));
  const keys = h('fieldset', { class: 'keys' }, h('legend', {}, 'SSH keys'), h('p', { class: 'loading' }, 'Loading keys…'));
  const ssh = h('input', { type: 'checkbox', name: 'ssh_enabled', checked: true });
  const mounts = h('textarea', { name: 'mount_paths', rows: 2, placeholder: '/root' });
  const ingress = h('textarea', { name: 'ingress', rows: 2, placeholder: '8080:80' });
  const submit = h('button', { type: 'submit' }, 'Create');
  const used = h('p', { class: 'quota', id: 'quota' });
  const form = h('form', { class: 'card wide', id: 'create-form' },
    h('h1', { tabindex: '-1' }, 'Create container'), used,
    field('Name', name),
    field('Instance type', type, 'CPU and memory are the type\'s limits; the disk defaults to 5 GB.'),
    keys,
    h('div', { class: 'field-check' }, ssh, h('label', { for: (ssh.id = 'ssh-enabled') }, 'SSH access through the SSH gateway')),
    field('Mount paths (one per line)', mounts, 'Directories kept on the container\'s volume; empty: /root.'),
    field('Ingress rules (one per line)', ingress, 'PORT or PORT:TARGET_PORT, e.g. 8080:80 (ports 8000-8999).'),
    h('div', { class: 'actions' }, h('a', { href: '/compute/containers', 'data-page': '', class: 'button secondary' }, 'Cancel'), submit));
  replace(main, form);
  get('/compute/quota').then((q) => {
    used.textContent = `You have ${quota(q.containers, q.max_containers)}`
      + (q.containers >= q.max_containers ? ': delete one to create another.' : '.');
  }, sayError);

  try {
    const { ssh_keys: list } = await get('/compute/ssh-keys');
    replace(keys, h('legend', {}, 'SSH keys'), list.length
      ? list.map((k) => h('div', { class: 'check' },
        h('input', { type: 'checkbox', name: 'key', value: k.id, id: `key-${k.id}`, checked: list.length === 1 }),
        h('label', { for: `key-${k.id}` }, `${k.name} `, h('code', {}, k.fingerprint))))
      : h('p', {}, 'No SSH keys yet: ', h('a', { href: '/compute/ssh-keys', 'data-page': '' }, 'add one'), ' (the terminal works without one).'));
  } catch (error) { sayError(error); }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let body;
    try {
      body = {
        name: name.value.trim(),
        instance_type: type.value,
        ssh_key_ids: [...form.querySelectorAll('input[name=key]:checked')].map((x) => x.value),
        ssh_enabled: ssh.checked,
        mount_paths: lines(mounts.value),
        ingress_rules: parseIngress(ingress.value),
      };
    } catch (error) { sayError(error); return; }
    submit.disabled = true;
    say(`Creating ${body.name}…`, 'busy');
    try {
      const created = await post('/compute/containers', body);
      say(`${created.name} created; it is starting.`);
      navigate(`/compute/containers/${created.id}`);
    } catch (error) {
      sayError(error);
    } finally { submit.disabled = false; }
  });
}
