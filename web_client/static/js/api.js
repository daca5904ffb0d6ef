// The session (token and user kept in localStorage) and a small fetch wrapper for /api/v1.

import { earlySettled, takeEarly } from "./early.js";
import { errorMessage } from "./i18n.js";

const TOKEN_KEY = "dh.token";
const USER_KEY = "dh.user";

/**
 * A refused or failed call. `message` is in the user's language (from the code);
 * `serverMessage` keeps the server's English text for logs. A call that never reached
 * the server has status 0, code "network_error" and `network` set.
 */
export class ApiError extends Error {
  constructor(status, code, serverMessage = "", details = null) {
    super(errorMessage(code, status, details));
    this.status = status;
    this.code = code;
    this.serverMessage = serverMessage;
    this.details = details;
    this.network = code === "network_error";
  }
}

export const session = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  get user() {
    try {
      return JSON.parse(localStorage.getItem(USER_KEY) || "null");
    } catch {
      return null;
    }
  },
  save(token, user) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
    // Positions in the event streams belong to this session only.
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith("dh.rt.")) sessionStorage.removeItem(key);
    }
  },
  hasRole(...roles) {
    const user = this.user;
    return !!user && roles.some((r) => (user.roles || []).includes(r));
  },
};

/** Send the user to the login page, coming back here afterwards. */
export function toLogin() {
  const next = location.pathname + location.search + location.hash;
  location.replace(`/app/?next=${encodeURIComponent(next)}`);
}

export function logout() {
  session.clear();
  location.replace("/app/");
}

/** Thrown to stop a page's script when nobody is signed in (the sign-in page is loading). */
export class SignedOut extends Error {}

// Stopping a page on its way to the sign-in page is not an error worth reporting.
window.addEventListener("error", (event) => {
  if (event.error instanceof SignedOut) event.preventDefault();
});
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof SignedOut) event.preventDefault();
});

/** Make sure someone is signed in; returns the user or redirects to the login page. */
export function requireLogin() {
  if (!session.token || !session.user) {
    toLogin();
    throw new SignedOut("not signed in");
  }
  return session.user;
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = response.statusText;
  let details = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      details = body.error.details ?? null;
    }
  } catch {
    /* not JSON: keep the status text */
  }
  return new ApiError(response.status, code, message, details);
}

/**
 * Call the API. `body` objects are sent as JSON, FormData as multipart.
 * Returns the parsed JSON (or the Response when `raw` is set). Throws ApiError.
 */
export async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = {};
  const token = session.token;
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const url = path.startsWith("/") ? path : `/api/v1/${path}`;
  let response;
  try {
    // The page may have asked for it already, before its modules arrived (early.js).
    const mayBeEarly = method === "GET" && payload === undefined && !signal;
    if (mayBeEarly) await earlySettled(url);
    const early = mayBeEarly ? takeEarly(url, token) : undefined;
    response = await (early || fetch(url, { method, headers, body: payload, signal }));
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", String(err && err.message));
  }
  if (response.status === 401 && token) {
    // While the user changes its password (js/account.js) the old token ends first.
    if (!sessionStorage.getItem("dh.password-change")) {
      session.clear();
      toLogin();
    }
    throw new ApiError(401, "token_expired", "Session expired");
  }
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Fetch a protected binary (PDF, image, CSV) and return an object URL for it. */
export async function blobUrl(path) {
  const response = await api(path, { raw: true });
  return URL.createObjectURL(await response.blob());
}

/** Download a protected file under a name. */
export async function download(path, filename) {
  const url = await blobUrl(path);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Upload one file (multipart field `file`); returns {id, sha256, size, content_type, pages}. */
export async function uploadFile(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return api("files", { method: "POST", body: form });
}

/** A list endpoint answers an array or {"<things>": [...]}: always give the array. */
export function listOf(answer, key) {
  if (Array.isArray(answer)) return answer;
  if (answer && Array.isArray(answer[key])) return answer[key];
  if (answer && typeof answer === "object") {
    const arrays = Object.values(answer).filter(Array.isArray);
    if (arrays.length === 1) return arrays[0];
  }
  return [];
}

/** A random id for idempotency keys and client message ids. */
export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
