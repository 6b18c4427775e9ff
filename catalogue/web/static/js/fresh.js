// Tells a researcher when the results on screen changed since they were loaded: polls the
// catalogue's index version (GET /v1/version, a few bytes) and, when it moved, asks the same
// search again and compares it with what is shown. A notice with a refresh button appears;
// the page never reloads or replaces results by itself.
import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { t } from "./i18n.js";

let shown = null;      // {version, params, print} of the results on screen
let pollMs = 15000;    // from the server (CATALOGUE_WEB_POLL)
let timer = null;
let slot = null;       // the notice element
let onRefresh = null;
let changed = false;

/** What the researcher sees, without what moves on every harvest (provenance, node list). */
export function fingerprint(body) {
  return JSON.stringify(body, (key, value) => (key === "provenance" || key === "nodes" || key === "query"
    ? undefined : value));
}

/** The index version before a search is sent (so a change during the search is not missed). */
export async function currentVersion() {
  try {
    const body = await api.version();
    if (typeof body.poll_seconds === "number" && body.poll_seconds > 0) pollMs = body.poll_seconds * 1000;
    return body.version;
  } catch {
    return null;  // no version: no notice, the search itself still works
  }
}

/** The notice element for the search page; `refresh` runs the search again. */
export function notice(refresh) {
  onRefresh = refresh;
  slot = h("div", { class: "fresh-slot", id: "fresh", "aria-live": "polite" });
  draw();
  return slot;
}

/** Results of `params` at index `version` are on screen now. */
export function loaded(version, params, body) {
  shown = version === null ? null : { version, params: params.toString(), print: fingerprint(body) };
  changed = false;
  draw();
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (shown) timer = setTimeout(check, pollMs);
}

async function check() {
  if (!shown || changed) return;
  if (document.visibilityState === "hidden") { schedule(); return; }
  const was = shown;
  try {
    const { version } = await api.version();
    if (version !== was.version && was === shown) {
      const body = await api.search(new URLSearchParams(was.params));
      if (was !== shown) return;  // the researcher searched again meanwhile
      if (fingerprint(body) !== was.print) {
        changed = true;
        draw();
        return;
      }
      shown = { ...was, version };  // the index moved, these results did not
    }
  } catch { /* try again at the next tick */ }
  schedule();
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && shown && !changed) { clearTimeout(timer); check(); }
});

/** Redraw in the current language. */
export function draw() {
  if (!slot) return;
  if (!changed) { fill(slot); return; }
  fill(slot, h("div", { class: "fresh-notice", role: "status" },
    h("p", {}, t("fresh.changed")),
    h("button", { type: "button", class: "primary", onclick: () => onRefresh?.() }, t("fresh.refresh"))));
}
