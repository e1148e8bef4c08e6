// Every request the pages make goes through here: the public routes (/v2/..., /metrics) and
// the dashboard's /ui/api/... routes. One place to add credentials once the server has API
// keys (see authHeaders).

export class RequestError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Headers that identify this client to the server (none until the server has API keys). */
export function authHeaders() {
  return {};
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
    throw new RequestError(response.status, `${response.status}: ${message}`);
  }
  return { status: response.status, ms, body: json, text, headers: response.headers };
}

export const getJSON = async (path) => (await send("GET", path)).body;
export const getText = async (path) => (await send("GET", path, { as: "text" })).text;

/** The dashboard's capability answer: {can_control, reason}. */
export const session = () => getJSON("/ui/api/session");

/** Every model with state, versions, signature and processing (GET /ui/api/models). */
export async function models() {
  return (await getJSON("/ui/api/models")).models;
}

/** A model name or version as one path segment. */
export const seg = (value) => encodeURIComponent(String(value));
