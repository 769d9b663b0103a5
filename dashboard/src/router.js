// History-API routing: the dashboard's pages live on the API's own paths
// (docs/dashboard.md), so a reload asks the gateway for the same path as a page.
const routes = [];
let render = () => {};

export function route(pattern, page) {
  const names = [];
  const regex = new RegExp(`^${pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return '([^/]+)'; })}$`);
  routes.push({ regex, names, page });
}

export function resolve(pathname) {
  for (const r of routes) {
    const m = r.regex.exec(pathname);
    if (m) return { page: r.page, params: Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}

export function onNavigate(fn) { render = fn; }

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

export function startRouter() {
  // a change of the #fragment alone (the skip link) is no new page
  let shown = location.pathname + location.search;
  window.addEventListener('popstate', () => {
    if (location.pathname + location.search === shown) return;
    shown = location.pathname + location.search;
    render();
  });
  document.addEventListener('click', (event) => {
    const a = event.target.closest('a');
    if (!a || a.target || a.hasAttribute('download') || event.defaultPrevented) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !a.hasAttribute('data-page')) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  render();
}
