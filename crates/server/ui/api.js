// Talks to /api/v1 with the admin token. The token lives in sessionStorage (or localStorage
// when the user asks to be remembered) and is sent as a bearer header, never in a URL.

const KEY = 'zenith.token';

export function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
}

export function setToken(t, remember) {
  sessionStorage.setItem(KEY, t);
  if (remember) localStorage.setItem(KEY, t);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** Whether the server accepts a token; no side effects. */
export async function checkToken(t) {
  let r;
  try {
    r = await fetch('/api/v1/summary', { headers: { Authorization: `Bearer ${t}` } });
  } catch (_) {
    throw new ApiError(0, 'The server cannot be reached.');
  }
  if (r.status === 401 || r.status === 403) return false;
  if (!r.ok) throw new ApiError(r.status, r.statusText);
  return true;
}

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

async function request(method, path, body, signal) {
  const headers = { Authorization: `Bearer ${token() || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The server cannot be reached.');
  }
  if (resp.status === 401) {
    signOut();
    window.dispatchEvent(new Event('zenith-signed-out'));
    throw new ApiError(401, 'The token was refused; sign in again.');
  }
  if (!resp.ok) {
    let msg = resp.statusText;
    let field;
    try {
      const e = (await resp.json()).error;
      msg = e.message;
      field = e.field;
    } catch (_) { /* not JSON: keep the status text */ }
    throw new ApiError(resp.status, field ? `${field}: ${msg}` : msg, field);
  }
  return resp;
}

export async function get(path, signal) {
  return (await request('GET', path, undefined, signal)).json();
}

export async function post(path, body, signal) {
  return (await request('POST', path, body === undefined ? {} : body, signal)).json();
}

export async function del(path, signal) {
  return (await request('DELETE', path, undefined, signal)).json();
}

/** Reads a streaming body chunk by chunk (logs with follow=true) until it ends or signal. */
export async function stream(path, onText, signal) {
  const resp = await request('GET', path, undefined, signal);
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    onText(dec.decode(value, { stream: true }));
  }
}

/**
 * Follows /api/v1/events (server-sent events) with the bearer header, which EventSource
 * cannot send. Reconnects with backoff until `signal` aborts; onStatus tells 'live'/'offline'.
 */
export async function follow(query, onEvent, signal, onStatus) {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const resp = await request('GET', `/events${query ? `?${query}` : ''}`, undefined, signal);
      onStatus && onStatus('live');
      delay = 500;
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          for (const line of frame.split('\n')) {
            if (!line.startsWith('data: ')) continue;
            try { onEvent(JSON.parse(line.slice(6))); } catch (_) { /* a bad frame is skipped */ }
          }
        }
        if (buf.length > 1 << 20) buf = ''; // a frame never gets this long; resynchronise
      }
    } catch (e) {
      if (signal.aborted || (e instanceof ApiError && e.status === 401)) return;
      if (e instanceof ApiError && e.status === 403) {
        // A token held to some namespaces may not follow every namespace's events: re-read
        // what is on screen every few seconds instead.
        onStatus && onStatus('polling');
        while (!signal.aborted) {
          await new Promise((r) => setTimeout(r, 3000));
          if (!signal.aborted) onEvent({ kind: 'poll' });
        }
        return;
      }
    }
    onStatus && onStatus('offline');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}
