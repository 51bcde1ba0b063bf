/**
 * The one way pages talk to the REST API: JSON in and out, the session's CSRF token on writes,
 * and every failure raised as an ApiError carrying the server's stable ``code`` and message.
 */

export class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && (body.detail || body.message)) || `Request failed (${status})`;
    super(detail);
    this.status = status;
    this.code = (body && body.code) || (status === 0 ? "network" : "error");
    this.detail = detail;
    this.body = body || {};
  }

  /** Field errors of a 400 (``errors`` from DRF validation), flattened to one line. */
  get fieldErrors() {
    const errors = this.body.errors;
    if (!errors || typeof errors !== "object") return "";
    return Object.entries(errors).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
  }
}

export function csrfToken() {
  const match = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith("csrftoken="));
  return match ? decodeURIComponent(match.slice("csrftoken=".length)) : "";
}

export async function api(method, url, body, { keepalive = false, raw = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, keepalive };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, { code: "network", detail: "The server cannot be reached. Your work is kept in this browser." });
  }
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => ({})) : await response.text();
  if (!response.ok) {
    const payload = typeof data === "object" ? data : { detail: response.status === 403 ? "Signed out or not allowed: sign in again." : `Request failed (${response.status}).` };
    throw new ApiError(response.status, payload);
  }
  return data;
}

export const get = (url, opts) => api("GET", url, undefined, opts);
export const post = (url, body, opts) => api("POST", url, body ?? {}, opts);
export const put = (url, body, opts) => api("PUT", url, body, opts);
export const patch = (url, body, opts) => api("PATCH", url, body, opts);
