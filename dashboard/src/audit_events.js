// What the audit trail's event codes mean (docs/accounts.md "Audit trail"), for both
// trails: a user's own (Settings > Activity) and everyone's (admin Audit).
import { h } from './dom.js';

// event -> [what it says on success, on failure]
export const EVENTS = {
  login: ['Signed in', 'Sign-in failed'],
  logout: ['Signed out'],
  'password.changed': ['Password changed', 'Password change refused: wrong current password'],
  'password.reset': ['Password reset by an admin'],
  'session.ended': ['Session ended'],
  'profile.updated': ['Profile updated'],
  '2fa.enabled': ['Authenticator app turned on'],
  '2fa.disabled': ['Authenticator app turned off'],
  '2fa.removed': ['Second factors removed by an admin'],
  '2fa.key_added': ['Security key added'],
  '2fa.key_renamed': ['Security key renamed'],
  '2fa.key_removed': ['Security key deleted'],
  '2fa.key_used': ['Security key used'],
  'token.created': ['API token created'],
  'token.deleted': ['API token deleted'],
  'service_account.created': ['Service account created'],
  'service_account.scopes_changed': ['Service account scopes changed'],
  'service_account.deleted': ['Service account deleted'],
  'user.created': ['Account created'],
  'user.deleted': ['Account deleted'],
  'user.admin_granted': ['Made an admin'],
  'user.admin_revoked': ['Admin rights removed'],
  'container.created': ['Container created'],
  'container.deleted': ['Container deleted'],
  'namespace.created': ['Namespace created'],
  'namespace.deleted': ['Namespace deleted'],
};

export function describeEvent(e) {
  const [ok, failed] = EVENTS[e.event] || [e.event];
  return e.outcome === 'failure' ? (failed || `${ok} (failed)`) : ok;
}

// The event as a cell: what it means, with its code below (what the API filters by).
export const eventCell = (e) => h('td', { class: e.outcome === 'failure' ? 'error' : null },
  describeEvent(e), h('br'), h('small', { class: 'hint' }, h('code', {}, e.event)));

// A filter of the known events; '' is every event.
export const eventSelect = (id, chosen, anyLabel) => h('select', { id, name: 'event' }, h('option', { value: '' }, anyLabel),
  Object.keys(EVENTS).map((e) => h('option', { value: e, selected: e === chosen }, `${EVENTS[e][0]} (${e})`)));
