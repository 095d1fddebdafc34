// The console's only way to the server: the public API, with the key in the Authorization header.
// The key lives in this module's memory and in this tab's sessionStorage, nowhere else: never in a
// URL, a cookie or a log line.

const STORAGE_KEY = "palisade.console.key";

let apiKey = null;
let onUnauthenticated = () => {};

export function restoreKey() {
  try {
    apiKey = sessionStorage.getItem(STORAGE_KEY);
  } catch {
    apiKey = null;
  }
  return apiKey !== null;
}

export function setKey(key) {
  apiKey = key;
  try {
    sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    // Storage disabled: the key stays in memory for this page only.
  }
}

export function forgetKey() {
  apiKey = null;
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Nothing was stored.
  }
}

export function hasKey() {
  return apiKey !== null;
}

/// Called when the server stops accepting the key (revoked, expired): the app signs out.
export function whenUnauthenticated(callback) {
  onUnauthenticated = callback;
}

/// An answer of the API that is not a success: the Gcore error body, parsed.
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.exceptionClass = this.body.exception_class || "";
    this.invalidFields = this.body.invalid_fields || {};
    this.info = this.body.info || null;
    this.requestId = this.body.request_id || "";
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/// A network failure: the server did not answer at all.
export class NetworkError extends Error {}

/// `method path` with an optional JSON body; resolves to the parsed body (null for 204), rejects
/// with ApiError or NetworkError.
export async function call(method, path, body, retried = false) {
  const headers = { Accept: "application/json" };
  if (apiKey !== null) headers.Authorization = `APIKey ${apiKey}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new NetworkError("The server did not answer. Is it running?");
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { message: text.slice(0, 200) };
    }
  }
  if (response.status === 429 && method === "GET" && !retried) {
    // Rate limited: a read is retried once, after the server's Retry-After (at most 2 s).
    const seconds = Math.min(Number(response.headers.get("retry-after")) || 1, 2);
    await sleep(seconds * 1000);
    return call(method, path, body, true);
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed);
    if (response.status === 401 && apiKey !== null) onUnauthenticated(error);
    throw error;
  }
  return parsed;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const put = (path, body) => call("PUT", path, body);
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

/// A query string from an object; arrays repeat the key, null and "" are left out.
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/// Polls a task until it is FINISHED or ERROR (or `timeoutMs` passes) and returns it.
export async function waitForTask(taskId, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let delay = 60;
  for (;;) {
    const task = await get(`/cloud/v1/tasks/${encodeURIComponent(taskId)}`);
    if (task.state === "FINISHED" || task.state === "ERROR") return task;
    if (Date.now() > deadline) return task;
    await sleep(delay);
    delay = Math.min(delay * 2, 1000);
  }
}
