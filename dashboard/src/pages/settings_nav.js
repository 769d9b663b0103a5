// The settings area's own navigation (its pages: settings.js and security.js).
import { h } from '../dom.js';

const PAGES = [
  ['/settings/profile', 'Profile and password'],
  ['/settings/security', 'Security'],
  ['/settings/sessions', 'Sessions'],
  ['/settings/activity', 'Activity'],
  ['/settings/service-accounts', 'Service accounts'],
];

export function settingsNav() {
  const here = location.pathname;
  return h('nav', { 'aria-label': 'Settings', class: 'subnav' }, h('ul', {}, PAGES.map(([path, label]) => h('li', {},
    h('a', { href: path, 'data-page': '', 'aria-current': here === path || here.startsWith(`${path}/`) ? 'page' : null }, label)))));
}
