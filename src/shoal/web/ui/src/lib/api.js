// Same-origin calls to the control plane's API. The session cookie goes along by
// default; a 401 sends the browser to the login page, an `{"error": ...}` body becomes
// an ApiError with that message.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

let redirecting = false;

export function loginUrl() {
  return '/login?next=' + encodeURIComponent(location.pathname + location.search);
}

export function toLogin() {
  if (redirecting) return;
  redirecting = true;
  location.assign(loginUrl());
}

/** `qs({a: 1, b: null})` -> "a=1": empty values are left out. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => p.append(k, x));
    else p.append(k, String(v));
  }
  return p.toString();
}

export function apiUrl(path, params) {
  const q = qs(params);
  return q ? `${path}?${q}` : path;
}

export async function api(url, init) {
  let res;
  try {
    res = await fetch(url, { headers: { Accept: 'application/json' }, ...init });
  } catch (e) {
    throw new ApiError(`cannot reach the control plane (${e.message || e})`, 0);
  }
  if (res.status === 401) {
    toLogin();
    throw new ApiError('not logged in', 401);
  }
  let body = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!res.ok) {
    const msg = body && typeof body.error === 'string' ? body.error : `${res.status} ${res.statusText}`.trim();
    throw new ApiError(msg, res.status);
  }
  return body;
}

export async function logout() {
  try {
    await fetch('/logout', { method: 'POST' });
  } catch {
    /* going to the login page anyway */
  }
  redirecting = true;
  location.assign('/login');
}
