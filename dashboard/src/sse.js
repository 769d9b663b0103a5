// Server-Sent Events read with fetch() rather than EventSource: the session goes in
// the Authorization header as on every other call (no token in the URL), and a
// refusal (403, 409, 429) comes with the server's JSON `error`, which an
// EventSource hides behind a bare `error` event.
import { errorOf, session } from './api.js';

// Calls onEvent(parsed data) for each event until the stream ends (resolves) or
// `signal` aborts (resolves); a refusal or a broken connection rejects with an
// error carrying the server's message (and .status).
export async function readEvents(path, onEvent, signal, onOpen = () => {}) {
  const headers = { Accept: 'text/event-stream' };
  if (session.token()) headers.Authorization = `Bearer ${session.token()}`;
  let response;
  try {
    response = await fetch(path, { headers, signal, cache: 'no-store' });
  } catch (error) {
    if (signal?.aborted) return;
    throw Object.assign(new Error('cannot reach the appliance'), { status: 0 });
  }
  if (!response.ok) throw await errorOf(response);
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, cut).replace(/\r$/, '');
        buffer = buffer.slice(cut + 1);
        if (line === '') {
          if (data.length) {
            let parsed = null;
            try { parsed = JSON.parse(data.join('\n')); } catch { /* not JSON: skipped */ }
            data = [];
            if (parsed !== null) onEvent(parsed);
          }
        } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        // comments (": keepalive"), event:, id:, retry: carry nothing the pages use
      }
    }
  } catch (error) {
    if (signal?.aborted) return;
    throw Object.assign(new Error('the stream broke off'), { status: 0 });
  }
}

// readEvents again after a drop (never after a refusal with a status); returns stop().
export function followEvents(path, onEvent, { onState = () => {}, onRefused = () => {} } = {}) {
  const control = new AbortController();
  let delay = 1000;
  const run = async () => {
    while (!control.signal.aborted) {
      onState('connecting');
      try {
        await readEvents(path, onEvent, control.signal, () => { delay = 1000; onState('live'); });
        if (control.signal.aborted) return;
      } catch (error) {
        if (error.status) { onState('refused'); onRefused(error); return; }
      }
      onState('reconnecting');
      await new Promise((r) => { setTimeout(r, delay); });
      delay = Math.min(delay * 2, 15000);
    }
  };
  run();
  return () => control.abort();
}
