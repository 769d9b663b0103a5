// The API client: the session JWT kept in localStorage (the API takes no cookie on
// JSON calls, docs/api.md), errors as their `error` message.
const KEY = 'appliance.session';

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

export const session = {
  get() {
    try { return JSON.parse(localStorage.getItem(KEY)) || null; } catch { return null; }
  },
  set(value) { localStorage.setItem(KEY, JSON.stringify(value)); },
  clear() { localStorage.removeItem(KEY); },
  token() { return this.get()?.token || ''; },
};

let onUnauthorized = () => {};
// Their 401 is a wrong password (`current password is incorrect`), not an ended session.
const CHECKS_PASSWORD = new Set(['/api/login', '/api/settings/password', '/api/settings/totp/disable']);
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === 'string') message = body.error;
  } catch { /* not JSON: keep the status line */ }
  const retry = response.headers.get('Retry-After');
  if (response.status === 429 && retry) message += ` (try again in ${retry} s)`;
  return new ApiError(response.status, message, retry);
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = session.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'cannot reach the appliance');
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && token && !CHECKS_PASSWORD.has(path)) onUnauthorized(error);
    throw error;
  }
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? response.json() : response.text();
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const put = (path, body = {}) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

export function wsUrl(path, params = {}) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [k, v] of Object.entries({ token: session.token(), ...params })) url.searchParams.set(k, v);
  return url.toString();
}
