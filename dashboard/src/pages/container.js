import { del, get, post, put } from '../api.js';
import { badge, describeType } from '../compute.js';
import { copyText, field, h, humanDate, replace } from '../dom.js';
import { navigate } from '../router.js';
import { watchStatus } from '../status.js';
import { act, confirmDialog, say, sayError, table } from '../ui.js';
import { lines, parseIngress } from './create.js';
import { containerLog } from './container_log.js';

export default async function containerPage(main, { id }) {
  const base = `/compute/containers/${encodeURIComponent(id)}`;
  let c;
  try { c = await get(base); } catch (error) {
    replace(main, h('h1', { tabindex: '-1' }, 'Container'), h('p', { class: 'error' }, error.message));
    return undefined;
  }
  document.title = `${c.name} · Appliance`;
  const status = h('span', { id: 'container-status' }, badge(c.status));
  const terminal = h('a', { href: `${base}/terminal`, 'data-page': '', class: 'button', id: 'open-terminal' }, 'Terminal');
  const start = h('button', { type: 'button', class: 'secondary', id: 'start',
    onclick: () => act(start, 'Starting…', () => post(`${base}/start`), 'Starting.') }, 'Start');
  const stop = h('button', { type: 'button', class: 'secondary', id: 'stop',
    onclick: () => act(stop, 'Stopping…', () => post(`${base}/stop`), 'Stopping.') }, 'Stop');
  const remove = h('button', { type: 'button', class: 'danger', id: 'delete', onclick: async () => {
    if (!(await confirmDialog(`Delete container ${c.name}? Its volume and data are removed.`))) return;
    const done = await act(remove, 'Deleting…', () => del(base), `${c.name} deleted.`);
    if (done) navigate('/compute/containers');
  } }, 'Delete');
  const buttons = () => {
    start.disabled = !['stopped', 'error'].includes(c.status);
    stop.disabled = c.status !== 'running';
    terminal.toggleAttribute('aria-disabled', c.status !== 'running');
    terminal.classList.toggle('disabled', c.status !== 'running');
  };
  buttons();

  const copy = h('button', { type: 'button', class: 'secondary', id: 'copy-ssh',
    onclick: () => copyText(c.ssh_command, copy) }, 'Copy');
  const sshToggle = h('input', { type: 'checkbox', id: 'ssh-toggle', checked: c.ssh_enabled });
  sshToggle.addEventListener('change', async () => {
    const want = sshToggle.checked;
    const ok = await act(sshToggle, 'Saving SSH access…', () => put(`${base}/ssh`, { ssh_enabled: want }),
      `SSH access ${want ? 'on' : 'off'}.`);
    if (!ok) sshToggle.checked = !want;
  });

  const ingressBox = h('div', { id: 'ingress' });
  const mountsBox = h('div', { id: 'mounts' });
  const log = containerLog(base, c.name);
  replace(main,
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, c.name), status,
      h('div', { class: 'actions' }, terminal, start, stop, remove)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Host name'), h('dd', { id: 'hostname' }, c.hostname),
      h('dt', {}, 'Type'), h('dd', {}, `${describeType(c.instance_type)}, ${c.storage_gb} GB disk`),
      h('dt', {}, 'Memory used'), h('dd', {}, `${c.memory_used_mb} of ${c.memory_mb} MB`),
      h('dt', {}, 'Address'), h('dd', { id: 'external-ip' }, c.external_ip || '—'),
      h('dt', {}, 'Created'), h('dd', {}, humanDate(c.created_at)),
      c.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error' }, c.error)] : null),
    h('section', { 'aria-labelledby': 'ssh-h' }, h('h2', { id: 'ssh-h' }, 'SSH'),
      h('div', { class: 'copy-row' }, h('code', { id: 'ssh-command' }, c.ssh_command), copy),
      h('div', { class: 'check' }, sshToggle, h('label', { for: 'ssh-toggle' }, 'SSH access through the SSH gateway'))),
    h('section', { 'aria-labelledby': 'ingress-h' }, h('h2', { id: 'ingress-h' }, 'Ingress rules'), ingressBox),
    h('section', { 'aria-labelledby': 'mounts-h' }, h('h2', { id: 'mounts-h' }, 'Mount paths'), mountsBox),
    log.section);

  const drawIngress = async () => {
    let rules = [];
    try { ({ rules } = await get(`${base}/ingress`)); } catch (error) { sayError(error); }
    const port = h('input', { inputmode: 'numeric', name: 'port', placeholder: '8080' });
    const target = h('input', { inputmode: 'numeric', name: 'target_port', placeholder: 'same' });
    const add = h('button', { type: 'submit' }, 'Add rule');
    const form = h('form', { class: 'inline' }, field('Port', port), field('Target port', target), add);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let rule;
      try { [rule] = parseIngress(target.value.trim() ? `${port.value}:${target.value}` : port.value); } catch (error) { sayError(error); return; }
      if (!rule) return;
      if (await act(add, 'Adding rule…', () => post(`${base}/ingress`, rule), `Port ${rule.port} forwarded.`)) drawIngress();
    });
    replace(ingressBox, table(['Port', 'Target port', 'Added', ''], rules.map((r) => {
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Remove port ${r.port}`, onclick: async () => {
        if (await act(remove, 'Removing rule…', () => del(`${base}/ingress/${r.port}`), `Port ${r.port} removed.`)) drawIngress();
      } }, 'Remove');
      return h('tr', {}, h('td', {}, r.port), h('td', {}, r.target_port), h('td', {}, humanDate(r.created_at)), h('td', {}, remove));
    }), 'No ingress rules.'), form);
  };

  const drawMounts = async () => {
    let paths = [];
    try { ({ mount_paths: paths } = await get(`${base}/mounts`)); } catch (error) { sayError(error); }
    const text = h('textarea', { rows: 3, id: 'mount-paths' });
    text.value = paths.join('\n');
    const save = h('button', { type: 'submit' }, 'Save mount paths');
    const form = h('form', {}, field('Mount paths (one per line)', text,
      'Saving restarts a running container: its processes are stopped.'), save);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (c.status === 'running' && !(await confirmDialog('Changing the mount paths restarts the running container. Go on?', 'Save and restart'))) return;
      const r = await act(save, 'Saving mount paths…', () => put(`${base}/mounts`, { mount_paths: lines(text.value) }),
        (x) => (x.restarted ? 'Mount paths saved; the container is restarting.' : 'Mount paths saved.'));
      if (r) drawMounts();
    });
    replace(mountsBox, form);
  };
  drawIngress();
  drawMounts();
  say('');

  const unwatch = watchStatus(async (message) => {
    if (message.type === 'container_status' && message.data.container_id === c.id) {
      if (message.data.status === 'deleted') { navigate('/compute/containers'); return; }
      c.status = message.data.status;
      if (message.data.external_ip) document.getElementById('external-ip').textContent = message.data.external_ip;
    } else if (message.type === 'containers') {
      const now = message.data.find((x) => x.id === c.id);
      if (now) c = now;
    } else return;
    replace(status, badge(c.status));
    buttons();
  });
  return () => { unwatch(); log.stop(); };
}
