// Calls to the admin API. Relative URLs: the UI works behind a path prefix.

export class AuthError extends Error {
  constructor(message, code) { super(message); this.code = code; }
}

export class ApiError extends Error {
  constructor(message, status, data) { super(message); this.status = status; this.data = data; }
}

/** Calls `path` (relative to /admin/) and returns the parsed JSON. */
export async function api(path, { method = 'GET', body, headers = {}, asLogin = false } = {}) {
  const h = { 'x-yallmp-ui': '1', accept: 'application/json', ...headers };
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  const r = await fetch(path, { method, headers: h, body: payload, credentials: 'same-origin', cache: 'no-store' });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  const err = data && data.error;
  if (r.status === 401 && !asLogin && !headers.authorization) throw new AuthError(err?.message || 'Login needed', err?.code);
  if (r.status === 403 && err?.code === 'admin_loopback_only') throw new AuthError(err.message, err.code);
  if (!r.ok) throw new ApiError(err?.message || `HTTP ${r.status}`, r.status, data);
  return data;
}

/** Query string from an object, leaving empty values out. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
}
