import { post, session } from '../api.js';
import { field, h } from '../dom.js';
import { navigate } from '../router.js';
import secondStep from './login_second.js';

// Where ?next= may send you: a page of this origin. Resolved as the browser would, since
// '/\\evil.example' starts with one '/' and is another host.
function nextPage(next) {
  let url = null;
  try { url = next ? new URL(next, location.origin) : null; } catch { /* not a URL at all */ }
  if (!url || url.origin !== location.origin || url.pathname.startsWith('/login')) return '/compute/containers';
  return url.pathname + url.search;
}

export default function loginPage(main, _params, signedIn) {
  document.title = 'Sign in · Appliance';
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { id: 'login-error', class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'card', 'aria-labelledby': 'login-title', 'aria-describedby': 'login-error' },
    h('h1', { id: 'login-title' }, 'Sign in'),
    field('Username', username), field('Password', password), error, button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      let me = await post('/api/login', { username: username.value.trim(), password: password.value });
      if (me.requires_2fa) me = await secondStep(form, me.challenge_token);
      session.set(me);
      signedIn?.();
      navigate(nextPage(new URLSearchParams(location.search).get('next')), { replace: true });
    } catch (e) {
      error.textContent = e.message;
      password.select();
    } finally {
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  });
  main.append(form);
  username.focus();
}
