// The console's only backend: /api/v1. Answers are the envelope {code, message, data, timestamp, trace_id}.
//
// The session's tokens live in memory and in sessionStorage (this tab only, gone when it closes), never in a
// URL. The access token is renewed with the refresh token shortly before it expires, and once more when the
// server says it is no longer valid; a failed renewal ends the session here too.

const BASE = '/api/v1';
const STORAGE_KEY = 'cyp-registry.session';
const RENEW_BEFORE_SECONDS = 60;
const SESSION_ENDED = new Set([30002]);

export class ApiError extends Error {
  constructor(message, {code = null, status = 0, traceId = null} = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.traceId = traceId;
  }
}

let session = readStored();
let renewing = null;
const endedListeners = [];

function readStored() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
    return stored && stored.access_token && stored.refresh_token ? stored : null;
  } catch {
    return null;
  }
}

function store(tokens) {
  session = tokens ? {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    expires_at: tokens.expires_at,
  } : null;
  if (session) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(STORAGE_KEY);
}

export function signedIn() {
  return session !== null;
}

// Called when the session ends without the user signing out (expired, ended elsewhere).
export function onSessionEnded(listener) {
  endedListeners.push(listener);
}

function endSession() {
  const had = session !== null;
  store(null);
  if (had) endedListeners.forEach((listener) => listener());
}

async function send(method, path, {body, query, raw, signal, token, binary} = {}) {
  let url = BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== '') params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    headers['Content-Type'] = raw.type || 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(url, {method, headers, body: payload, signal, credentials: 'omit', cache: 'no-store'});
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError('The server could not be reached; check the connection and try again.');
  }
  const traceId = response.headers.get('X-Trace-Id');
  const type = response.headers.get('Content-Type') || '';
  if (binary && response.ok && !type.startsWith('application/json')) return response.blob();
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status} ${response.statusText} without a readable body.`,
      {status: response.status, traceId});
  }
  if (envelope.code !== 20000) {
    throw new ApiError(envelope.message || `request failed (${response.status})`,
      {code: envelope.code, status: response.status, traceId: envelope.trace_id || traceId});
  }
  return envelope.data;
}

async function renew() {
  if (!renewing) {
    const refreshToken = session && session.refresh_token;
    renewing = (async () => {
      try {
        store(await send('POST', '/auth/refresh', {body: {refresh_token: refreshToken}}));
        return true;
      } catch (error) {
        if (error.code) endSession();
        return false;
      } finally {
        renewing = null;
      }
    })();
  }
  return renewing;
}

// One /api/v1 call: answers `data`, or throws ApiError (message, code, trace id).
export async function api(method, path, options = {}) {
  if (session && session.expires_at - Date.now() / 1000 < RENEW_BEFORE_SECONDS) await renew();
  const token = session && session.access_token;
  try {
    return await send(method, path, {...options, token});
  } catch (error) {
    if (!token || !SESSION_ENDED.has(error.code)) throw error;
    // The access token was refused: renew it (unless a concurrent call just did) and try once more.
    if (session && session.access_token === token) await renew();
    if (session && session.access_token !== token) return send(method, path, {...options, token: session.access_token});
    throw error;
  }
}

export const get = (path, options) => api('GET', path, options);
export const post = (path, body, options = {}) => api('POST', path, {...options, body});
export const put = (path, body, options = {}) => api('PUT', path, {...options, body});
export const patch = (path, body, options = {}) => api('PATCH', path, {...options, body});
export const del = (path, options) => api('DELETE', path, options);

export async function signIn(username, password) {
  store(await send('POST', '/auth/login', {body: {username, password}}));
}

// Ends the session on the server (every node), then forgets its tokens here whatever the answer.
export async function signOut() {
  const token = session && session.access_token;
  store(null);
  if (token) {
    try {
      await send('POST', '/auth/logout', {token});
    } catch {
      // Already ended, or the server is unreachable: the tokens are gone from this tab either way.
    }
  }
}

// Path segments of API URLs: a repository path keeps its slashes encoded (%2F), as the API accepts.
export function segment(value) {
  return encodeURIComponent(value);
}
