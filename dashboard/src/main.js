// Entry point: the frame (navigation, status line), sign-in guard and the page table.
import { get, post, session, whenUnauthorized } from './api.js';
import { h, replace } from './dom.js';
import { navigate, onNavigate, resolve, route, startRouter } from './router.js';
import { say, statusLine } from './ui.js';
import loginPage from './pages/login.js';
import containersPage from './pages/containers.js';
import createPage from './pages/create.js';
import containerPage from './pages/container.js';
import keysPage from './pages/keys.js';
import namespacesPage from './pages/namespaces.js';
import filesPage from './pages/files.js';
import tokensPage from './pages/tokens.js';
import securityPage from './pages/security.js';
import { settingsPages } from './pages/settings.js';
import { adminPages } from './pages/admin.js';

const terminalPage = async (main, params) => (await import('./pages/terminal.js')).default(main, params);

route('/login', loginPage);
route('/compute/containers', containersPage);
route('/compute/containers/new', createPage);
route('/compute/containers/:id', containerPage);
route('/compute/containers/:id/terminal', terminalPage);
route('/compute/ssh-keys', keysPage);
route('/storage/namespaces', namespacesPage);
route('/storage/files', filesPage);
route('/api/tokens', tokensPage);
route('/settings/security', securityPage);
for (const [path, page] of Object.entries(settingsPages)) route(path, page);
for (const [path, page] of Object.entries(adminPages)) route(path, page);

const NAV = [
  ['/compute/containers', 'Containers'],
  ['/compute/ssh-keys', 'SSH keys'],
  ['/storage/namespaces', 'Files', '/storage'],
  ['/api/tokens', 'API tokens'],
  ['/settings/profile', 'Settings', '/settings'],
];
const ADMIN_NAV = [
  ['/admin/users', 'Users'],
  ['/compute/admin/containers', 'All containers'],
  ['/admin/namespaces', 'All namespaces'],
  ['/admin/sessions', 'Sessions'],
  ['/admin/hosts', 'Hosts'],
  ['/admin/health', 'Health'],
  ['/admin/logs', 'Logs'],
  ['/admin/audit', 'Audit'],
];

let cleanup = null;
let checked = false;

function frame(user) {
  const here = location.pathname;
  const link = ([path, label, area = path]) => h('li', {}, h('a', {
    href: path, 'data-page': '', 'aria-current': here === area || here.startsWith(`${area}/`) ? 'page' : null,
  }, label));
  const main = h('main', { id: 'main', tabindex: '-1' });
  const signOut = async () => {
    try { await post('/api/logout'); } catch { /* signed out locally either way */ }
    session.clear();
    navigate('/login');
    say('Signed out.');
  };
  replace(document.getElementById('app'),
    h('a', { href: '#main', class: 'skip' }, 'Skip to content'),
    h('header', { class: 'top' },
      h('a', { href: '/compute/containers', 'data-page': '', class: 'brand' }, 'Appliance'),
      h('nav', { 'aria-label': 'Main' }, h('ul', {}, NAV.map(link))),
      user.is_admin ? h('nav', { 'aria-label': 'Admin', class: 'admin-nav' }, h('ul', {}, ADMIN_NAV.map(link))) : null,
      h('div', { class: 'me' },
        h('span', { class: 'who' }, user.display_name || user.username),
        h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: signOut }, 'Sign out'))),
    statusLine(),
    main);
  return main;
}

async function render() {
  if (cleanup) { try { cleanup(); } catch { /* the old page is gone anyway */ } cleanup = null; }
  if (location.pathname === '/') { navigate('/compute/containers', { replace: true }); return; }
  const found = resolve(location.pathname);
  const user = session.get();
  if (!user && location.pathname !== '/login') {
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
    return;
  }
  if (user && !checked) {
    checked = true;
    try {
      Object.assign(user, await get('/api/session'));
      session.set(user);
    } catch (error) {
      if (error.status === 401) return; // whenUnauthorized took us to the sign-in page
    }
  }
  if (location.pathname === '/login') {
    const app = document.getElementById('app');
    const main = h('main', { id: 'main', class: 'narrow' });
    replace(app, statusLine(), main);
    cleanup = await loginPage(main, {}, () => { checked = true; });
    return;
  }
  const main = frame(user);
  if (!found) {
    replace(main, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/compute/containers', 'data-page': '' }, 'Containers')));
    return;
  }
  document.title = 'Appliance';
  cleanup = (await found.page(main, found.params, user)) || null;
  main.querySelector('h1')?.focus?.();
}

whenUnauthorized(() => {
  session.clear();
  checked = false;
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
  say('Your session has ended: sign in again.', 'error');
});

onNavigate(render);
startRouter();
