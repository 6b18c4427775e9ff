// Calls to the catalogue's HTTP API, with errors turned into readable messages.

export class ApiError extends Error {
  constructor(message, { status = 0, invalid = [] } = {}) {
    super(message);
    this.status = status;
    this.invalid = invalid;  // [{name, reason}] from a 400 problem+json
  }
}

// `fresh`: ask past any cache (search answers may be cached for 10 s by browsers and
// proxies; the page's own searches and version checks must see a push at once)
async function getJson(path, signal, { fresh = false } = {}) {
  let response;
  try {
    const cache = fresh ? "no-cache" : "default";
    response = await fetch(path, { signal, cache, headers: { Accept: "application/json" } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(error.message || "network error");
  }
  if (!response.ok) {
    let problem = {};
    try { problem = await response.json(); } catch { /* not JSON */ }
    const detail = typeof problem.detail === "string" ? problem.detail : null;
    const message = detail || problem.title || `HTTP ${response.status}`;
    throw new ApiError(message, { status: response.status, invalid: problem.invalid_params || [] });
  }
  return response.json();
}

export function search(params, signal) {
  const qs = params.toString();
  return getJson(`/v1/search${qs ? `?${qs}` : ""}`, signal, { fresh: true });
}

/** The catalogue's index version ({version, poll_seconds}): it moves when a harvest changes data. */
export function version(signal) {
  return getJson("/v1/version", signal, { fresh: true });
}

export function nodePath(origin) {
  return String(origin).split("/").map(encodeURIComponent).join("/");
}

export async function nodes(signal) {
  const body = await getJson("/v1/nodes", signal);
  return Array.isArray(body) ? body : body.nodes || body.items || [];
}

export function node(origin, signal) {
  return getJson(`/v1/nodes/${nodePath(origin)}`, signal);
}

export function codelist(name) {
  return getJson(`/v1/codelists/${encodeURIComponent(name)}`);
}
