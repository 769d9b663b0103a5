// A login's second step (docs/accounts.md): a security key, or a code from an
// authenticator app (or a recovery code). The challenge token is spent by any
// attempt, so a failure goes back to the password form.
import { field, h } from '../dom.js';
import { postWith, signInWithKey } from '../webauthn.js';

export default function secondStep(form, challengeToken) {
  return new Promise((resolve, reject) => {
    const code = h('input', { name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric', required: true });
    const useKey = h('button', { type: 'button', id: 'use-key' }, 'Use security key');
    const verify = h('button', { type: 'submit' }, 'Verify code');
    const codeForm = h('form', { id: 'code-form' }, field('Authentication code', code, 'From your app, or one of your recovery codes.'), verify);
    const card = h('section', { class: 'card', id: 'second-step', 'aria-labelledby': 'second-title' },
      h('h1', { id: 'second-title', tabindex: '-1' }, 'Two-factor authentication'),
      h('p', {}, 'Your password was right. Confirm it is you:'), useKey, h('p', {}, 'or'), codeForm);
    const end = (fn, value) => { card.remove(); form.hidden = false; fn(value); };
    const attempt = async (button, fn) => {
      useKey.disabled = true;
      verify.disabled = true;
      button.textContent = 'Checking…';
      try { end(resolve, await fn()); } catch (e) { end(reject, e); }
    };
    useKey.addEventListener('click', () => attempt(useKey, () => signInWithKey(challengeToken)));
    codeForm.addEventListener('submit', (event) => {
      event.preventDefault();
      attempt(verify, () => postWith('', '/api/login/totp', { challenge_token: challengeToken, code: code.value.trim() }));
    });
    form.hidden = true;
    form.after(card);
    card.querySelector('h1').focus();
  });
}
