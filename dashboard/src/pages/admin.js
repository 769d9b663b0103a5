// Admin pages (shown to admins only; the API refuses everyone else anyway).
import { del, get, post, put, session } from '../api.js';
import { badge, describeType } from '../compute.js';
import { field, h, humanBytes, humanDate, replace } from '../dom.js';
import { act, confirmDialog, table } from '../ui.js';

// Pages loaded when first opened (kept out of the first load, docs/dashboard.md "Size").
const lazy = (load) => async (...args) => (await load()).default(...args);

// A modal asking for a new password; resolves to it, or null when cancelled.
function passwordDialog(question) {
  return new Promise((resolve) => {
    const input = h('input', { type: 'password', required: true, autocomplete: 'new-password', id: 'new-password' });
    const form = h('form', { method: 'dialog' }, h('p', { id: 'password-q' }, question), field('New password', input),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close('') }, 'Cancel'),
        h('button', { type: 'submit', value: 'set' }, 'Set password')));
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'password-q' }, form);
    form.addEventListener('submit', (e) => { e.preventDefault(); dialog.close('set'); });
    dialog.addEventListener('close', () => { dialog.remove(); resolve(dialog.returnValue === 'set' ? input.value : null); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

function listPage(title, path, headers, row, empty) {
  return async (main) => {
    document.title = `${title} · Appliance`;
    const box = h('div', { id: 'admin-list' }, h('p', { class: 'loading' }, 'Loading…'));
    replace(main, h('h1', { tabindex: '-1' }, title), box);
    const draw = async () => {
      try {
        const items = await get(path);
        replace(box, table(headers, items.map((x) => row(x, draw)), empty));
      } catch (error) { replace(box, h('p', { class: 'error' }, error.message)); }
    };
    await draw();
  };
}

async function usersPage(main) {
  const me = session.get()?.user_id;
  await listPage('Users', '/admin/users', ['User name', 'Display name', 'Id', 'Admin', 'Actions'], (u, draw) => {
    // PUT /admin/users/{id}: the server refuses one's own flag and the last admin's
    const flip = u.user_id === me ? h('span', { class: 'hint' }, '(you)')
      : h('button', { type: 'button', class: 'secondary', 'aria-label': `${u.is_admin ? 'Remove admin from' : 'Make admin'} ${u.username}`,
        onclick: async () => {
          const done = u.is_admin ? `${u.username} is no longer an admin.` : `${u.username} is now an admin.`;
          if (await act(flip, 'Saving…', () => put(`/admin/users/${u.user_id}`, { is_admin: !u.is_admin }), done)) draw();
        } }, u.is_admin ? 'Remove admin' : 'Make admin');
    // DELETE /admin/users/{id}: the server refuses one's own account and the last admin
    const remove = u.user_id === me ? null : h('button', { type: 'button', class: 'danger', 'aria-label': `Delete user ${u.username}`, onclick: async () => {
      if (!(await confirmDialog(`Delete user ${u.username} and everything they own?`))) return;
      if (await act(remove, 'Deleting…', () => del(`/admin/users/${u.user_id}`), `${u.username} deleted.`)) draw();
    } }, 'Delete');
    // PUT /admin/users/{id}/password: ends the user's sessions (an admin's own current one stays)
    const password = h('button', { type: 'button', class: 'secondary', 'aria-label': `Set password of ${u.username}`, onclick: async () => {
      const value = await passwordDialog(`A new password for ${u.username}: every session of theirs ends.`);
      if (value) await act(password, 'Setting the password…', () => put(`/admin/users/${u.user_id}/password`, { password: value }),
        `${u.username} has a new password; their sessions ended.`);
    } }, 'Set password');
    // DELETE /admin/users/{id}/second-factors: the way back in for someone who lost theirs
    const factors = h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove second factors of ${u.username}`, onclick: async () => {
      if (!(await confirmDialog(`Remove ${u.username}'s authenticator app, recovery codes and security keys?`, 'Remove'))) return;
      await act(factors, 'Removing second factors…', () => del(`/admin/users/${u.user_id}/second-factors`),
        `${u.username} signs in with the password alone now.`);
    } }, 'Remove second factors');
    return h('tr', { 'data-id': u.user_id }, h('td', {}, u.username), h('td', {}, u.display_name), h('td', {}, h('code', {}, u.user_id)),
      h('td', {}, u.is_admin ? 'yes' : 'no'), h('td', {}, h('div', { class: 'actions' }, flip, password, factors, remove)));
  }, 'No users.')(main);
  const username = h('input', { name: 'username', required: true, autocomplete: 'off' });
  const password = h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' });
  const display = h('input', { name: 'display_name', autocomplete: 'off' });
  const admin = h('input', { type: 'checkbox', id: 'new-admin' });
  const create = h('button', { type: 'submit' }, 'Create user');
  const form = h('form', { class: 'card wide', id: 'user-form' }, h('h2', {}, 'New user'),
    field('User name', username), field('Password', password), field('Display name', display),
    h('div', { class: 'check' }, admin, h('label', { for: 'new-admin' }, 'Administrator')), create);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { username: username.value.trim(), password: password.value, display_name: display.value.trim() || undefined, is_admin: admin.checked };
    if (await act(create, 'Creating user…', () => post('/admin/users', body), (u) => `User ${u.username} created.`)) {
      form.reset();
      usersPage(main);
    }
  });
  main.append(form);
}

async function hostsPage(main) {
  await listPage('Hosts', '/admin/hosts', ['Name', 'Status', 'State', 'CPUs used', 'Memory used', 'Containers', 'Heartbeat', ''], (x, draw) => {
    const drained = x.state === 'drained';
    const toggle = h('button', { type: 'button', class: 'secondary', onclick: () => act(toggle, 'Saving…',
      () => post(`/admin/hosts/${encodeURIComponent(x.name)}/${drained ? 'undrain' : 'drain'}`), `${x.name} ${drained ? 'takes guests again' : 'drained'}.`).then(draw) },
    drained ? 'Undrain' : 'Drain');
    return h('tr', {}, h('td', {}, x.name), h('td', {}, badge(x.status)), h('td', {}, x.state),
      h('td', {}, `${x.cpus_used} of ${x.cpus}`), h('td', {}, `${x.memory_mb_used} of ${x.memory_mb} MB`),
      h('td', {}, x.containers), h('td', {}, humanDate(x.last_heartbeat)), h('td', {}, toggle));
  }, 'No hosts.')(main);
}

export const adminPages = {
  '/admin/users': usersPage,
  '/compute/admin/containers': listPage('All containers', '/compute/admin/containers',
    ['Name', 'Owner', 'Status', 'Type', 'Host', 'Created'], (c) => h('tr', {}, h('td', {}, c.name), h('td', {}, c.owner),
      h('td', {}, badge(c.status)), h('td', {}, describeType(c.instance_type)), h('td', {}, c.host), h('td', {}, humanDate(c.created_at))),
    'No containers.'),
  '/admin/namespaces': listPage('All namespaces', '/admin/namespaces', ['Name', 'Owner', 'Visibility', 'Files', 'Size'],
    (n) => h('tr', {}, h('td', {}, n.name), h('td', {}, n.owner || '(shared)'), h('td', {}, ['private', 'visible', 'public'][n.visibility]),
      h('td', {}, n.count), h('td', {}, humanBytes(n.bytes))), 'No namespaces.'),
  '/admin/sessions': listPage('Sessions', '/admin/sessions', ['User', 'Address', 'Signed in', 'Last seen', ''], (s, draw) => {
    // DELETE /admin/sessions/{id}: ends it at once, its open streams too
    const end = h('button', { type: 'button', class: 'danger', 'aria-label': `End session of ${s.username} from ${s.ip_address}`, onclick: async () => {
      if (!(await confirmDialog(`End this session of ${s.username} (${s.ip_address})? They must sign in again.`, 'End session'))) return;
      if (await act(end, 'Ending the session…', () => del(`/admin/sessions/${encodeURIComponent(s.id)}`), `The session of ${s.username} ended.`)) draw();
    } }, 'End');
    return h('tr', { 'data-id': s.id }, h('td', {}, s.username), h('td', {}, s.ip_address), h('td', {}, humanDate(s.created_at)),
      h('td', {}, humanDate(s.last_seen_at)), h('td', {}, end));
  }, 'No sessions.'),
  '/admin/hosts': hostsPage,
  '/admin/health': lazy(() => import('./health.js')),
  '/admin/logs': lazy(() => import('./logs.js')),
  '/admin/audit': lazy(() => import('./audit.js')),
};
