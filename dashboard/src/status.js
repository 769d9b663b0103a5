// The status WebSocket (/compute/ws): the containers snapshot, then status changes.
// One socket while some page listens; reconnects after a drop (never polls).
import { session, wsUrl } from './api.js';

const listeners = new Set();
let socket = null;
let retry = null;
let delay = 500;

function open() {
  if (!session.token()) return;
  socket = new WebSocket(wsUrl('/compute/ws'));
  socket.onopen = () => { delay = 500; };
  socket.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    for (const fn of listeners) fn(message);
  };
  socket.onclose = () => {
    socket = null;
    if (listeners.size && session.token()) {
      retry = setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    }
  };
}

// fn({type: 'containers', data: [...]}) on every (re)connect, then
// fn({type: 'container_status', data: {container_id, status, external_ip?}}). Returns the unsubscribe.
export function watchStatus(fn) {
  listeners.add(fn);
  if (!socket && !retry) open();
  else if (socket && socket.readyState === WebSocket.OPEN) {
    // a late listener needs the snapshot: a fresh socket sends one
    socket.onclose = null;
    socket.close();
    socket = null;
    open();
  }
  return () => {
    listeners.delete(fn);
    if (!listeners.size) {
      clearTimeout(retry);
      retry = null;
      if (socket) { socket.onclose = null; socket.close(); socket = null; }
    }
  };
}
