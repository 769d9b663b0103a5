// The terminal page: xterm.js on the terminal WebSocket (docs/access.md "Terminal
// WebSocket"): binary frames both ways, {"type":"resize"} when the window changes.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { get, wsUrl } from '../api.js';
import { h, replace } from '../dom.js';
import { say } from '../ui.js';

// The page's own colours (style.css) so the terminal follows the light/dark theme.
const LIGHT = { background: '#fbfbfb', foreground: '#1b1b1b', cursor: '#1b1b1b', cursorAccent: '#fbfbfb', selectionBackground: '#b5d5ff' };
const DARK = { background: '#111418', foreground: '#e6e6e6', cursor: '#e6e6e6', cursorAccent: '#111418', selectionBackground: '#3a5a85' };

export default async function terminalPage(main, { id }) {
  const base = `/compute/containers/${encodeURIComponent(id)}`;
  let name = id;
  try { name = (await get(base)).name; } catch { /* the socket reports what is wrong */ }
  document.title = `Terminal ${name} · Appliance`;
  const state = h('span', { id: 'terminal-state', class: 'badge' }, 'connecting');
  const reconnect = h('button', { type: 'button', id: 'reconnect', class: 'secondary', hidden: true }, 'Reconnect');
  const screen = h('div', { id: 'terminal', class: 'terminal', role: 'region', 'aria-label': `Terminal of ${name}` });
  main.classList.add('fill');
  replace(main,
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, `Terminal: ${name}`), state, reconnect,
      h('a', { href: base, 'data-page': '', class: 'button secondary' }, 'Back to container')),
    screen);

  const scheme = window.matchMedia('(prefers-color-scheme: dark)');
  const theme = () => (scheme.matches ? DARK : LIGHT);
  const term = new Terminal({
    cursorBlink: true, fontSize: 14, scrollback: 5000, theme: theme(), minimumContrastRatio: 4.5,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  });
  const onScheme = () => { term.options.theme = theme(); };
  scheme.addEventListener('change', onScheme);
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  window.__terminal = term; // read by the browser tests (tests/browser)
  const encoder = new TextEncoder();
  let socket = null;

  const sendSize = () => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
  };
  const connect = () => {
    reconnect.hidden = true;
    state.textContent = 'connecting';
    socket = new WebSocket(wsUrl(`${base}/terminal`, { cols: term.cols, rows: term.rows }));
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => { state.textContent = 'connected'; sendSize(); term.focus(); say(''); };
    socket.onmessage = (e) => term.write(typeof e.data === 'string' ? e.data : new Uint8Array(e.data));
    socket.onclose = (e) => {
      state.textContent = 'disconnected';
      reconnect.hidden = false;
      say(e.code === 1000 ? 'The shell ended.' : `Terminal closed${e.reason ? `: ${e.reason}` : ''}. Is the container running?`,
        e.code === 1000 ? 'ok' : 'error');
    };
  };
  term.onData((data) => { if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(data)); });
  term.onResize(sendSize);
  const onWindow = () => fit.fit();
  window.addEventListener('resize', onWindow);
  reconnect.addEventListener('click', connect);
  connect();

  return () => {
    window.removeEventListener('resize', onWindow);
    scheme.removeEventListener('change', onScheme);
    if (socket) { socket.onclose = null; socket.close(); }
    term.dispose();
    delete window.__terminal;
  };
}
