// Shared pieces of every page: the status line (progress and outcomes, read out by
// screen readers), a confirmation dialog, and a button that shows its action's progress.
import { h } from './dom.js';

let statusEl = null;
export function statusLine() {
  statusEl = h('div', { id: 'status', role: 'status', 'aria-live': 'polite', class: 'status' });
  return statusEl;
}

export function say(message, kind = 'ok') {
  if (!statusEl) return;
  statusEl.className = `status ${kind}`;
  statusEl.textContent = message;
}

export function sayError(error) { say(error.message || String(error), 'error'); }

export function confirmDialog(question, action = 'Delete') {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-q' },
      h('p', { id: 'confirm-q' }, question),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close('no') }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => dialog.close('yes') }, action)));
    dialog.addEventListener('close', () => { dialog.remove(); resolve(dialog.returnValue === 'yes'); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Runs `fn` with the button disabled and "Working…" said; the outcome in the status line.
export async function act(button, working, fn, done) {
  if (button) button.disabled = true;
  say(working, 'busy');
  try {
    const result = await fn();
    if (done) say(typeof done === 'function' ? done(result) : done, 'ok');
    return result;
  } catch (error) {
    sayError(error);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return tableWrap(h('table', {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows)));
}

// A wide table scrolls inside its own box on a narrow screen; the page itself never scrolls
// sideways. While it scrolls, the box takes the focus (Tab), so the arrow keys scroll it too.
const scrolls = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    if (!target.isConnected) scrolls.unobserve(target); // a redrawn list's old table
    else if (target.scrollWidth > target.clientWidth) target.setAttribute('tabindex', '0');
    else target.removeAttribute('tabindex');
  }
});
export function tableWrap(tableEl) {
  const wrap = h('div', { class: 'table-wrap' }, tableEl);
  scrolls.observe(wrap);
  return wrap;
}

// For a list drawn from a fetch that may be asked for again before it answers: each call
// of the returned function starts a turn and gives a check, true while no later turn began
// (so a slower, older answer is not drawn over a newer one).
export function turns() {
  let latest = 0;
  return () => {
    const mine = ++latest;
    return () => mine === latest;
  };
}
