// The one place that talks HTTP: cookies ride along by themselves, actions carry the CSRF token
// the session answer gave us, a problem document becomes an ApiError with its `detail`, and a
// 401 anywhere means the session is gone (expired, signed out elsewhere).

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

const SAFE = new Set(["GET", "HEAD"]);
let csrfToken = null;
let sessionLost = () => {};

export function setCsrfToken(token) {
  csrfToken = token;
}

export function onSessionLost(handler) {
  sessionLost = handler;
}

/** A path segment from a value: agent names, ids. */
export const seg = encodeURIComponent;

/** `path` with a query string from the non-empty values of `params`. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function problemOf(response) {
  let body = {};
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      body = await response.json();
    } catch {
      body = {};
    }
  }
  return new ApiError(
    response.status,
    body.code || "http_" + response.status,
    body.detail || body.title || response.statusText || String(response.status),
  );
}

/**
 * One request. `signIn` marks the sign-in request itself, whose 401 means "wrong password",
 * not "session lost".
 */
export async function request(method, path, body, { signIn = false } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", null);
  }
  if (!response.ok) {
    const error = await problemOf(response);
    if (response.status === 401 && !signIn) sessionLost(error);
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : null;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body === undefined ? {} : body);
export const del = (path) => request("DELETE", path);
