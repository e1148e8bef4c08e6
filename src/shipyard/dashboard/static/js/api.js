// Every request the pages make goes through here: the public routes (/v2/..., /metrics) and
// the dashboard's /ui/api/... routes. The one place that adds the API key (authHeaders).
//
// The key lives in this tab's sessionStorage only: never in localStorage, a cookie or a URL,
// never logged. Closing the tab forgets it, and so does a 401 (the server does not know it).

const KEY_ITEM = "shipyard.api-key";
/** What an API key may hold: visible ASCII, no spaces (an HTTP header value). */
export const KEY_PATTERN = /^[\x21-\x7e]{1,4096}$/;

export class RequestError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  /** Whether the server refused the request for its key (401) or the key's role (403). */
  get refused() {
    return this.status === 401 || this.status === 403;
  }
}

/** The API key this tab uses ("" for none). */
export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM) || "";
  } catch {
    return "";
  }
}

/** Use `key` for this tab's requests from now on. */
export function rememberKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

/** Stop sending a key. */
export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** Headers that identify this client to the server: `Authorization: Bearer KEY` when set. */
export function authHeaders() {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

const refusalListeners = [];

/** Call `listener(error)` whenever the server refuses a request with 401 or 403. */
export function onRefused(listener) {
  refusalListeners.push(listener);
}

/** Where to point someone whose request was refused, by status. */
function refusalHint(status) {
  return status === 401
    ? "Enter a valid API key in the “API key” form at the top of the page."
    : "This needs a key with another role: enter one in the “API key” form at the top of the page.";
}

/**
 * Send a request; resolve to {status, ms, body, text, headers}. Non-2xx answers reject with
 * a RequestError carrying the server's {"error"} message.
 */
export async function send(method, path, { body, headers, as = "json" } = {}) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, {
      method,
      body,
      cache: "no-store",
      headers: { ...authHeaders(), ...(headers || {}) },
    });
  } catch (error) {
    throw new RequestError(0, `the server did not answer (${error.message})`);
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let json;
  if (as === "json" || !response.ok) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!response.ok) {
    const message = json && typeof json.error === "string" ? json.error : text.slice(0, 300);
    if (response.status === 401 || response.status === 403) {
      if (response.status === 401) forgetKey();
      const error = new RequestError(
        response.status,
        `${response.status}: ${message.replace(/\.$/, "")}. ${refusalHint(response.status)}`,
      );
      for (const listener of refusalListeners) listener(error);
      throw error;
    }
    throw new RequestError(response.status, `${response.status}: ${message}`);
  }
  return { status: response.status, ms, body: json, text, headers: response.headers };
}

export const getJSON = async (path) => (await send("GET", path)).body;
export const getText = async (path) => (await send("GET", path, { as: "text" })).text;

/**
 * What this client is offered (open to everyone): {can_control, reason, keys, key, key_error,
 * allows}; `keys`: the server needs API keys; `key`: {name, roles} of the key sent, never the
 * key; `allows`: {infer, metrics, admin, control} → whether the server would let it through.
 */
export const session = () => getJSON("/ui/api/session");

/** The session answer for `key` instead of the stored one: whether the server knows it. */
export const sessionFor = async (key) =>
  (await send("GET", "/ui/api/session", { headers: { Authorization: `Bearer ${key}` } })).body;

/** Every model with state, versions, signature and processing (GET /ui/api/models). */
export async function models() {
  return (await getJSON("/ui/api/models")).models;
}

/** A model name or version as one path segment. */
export const seg = (value) => encodeURIComponent(String(value));
