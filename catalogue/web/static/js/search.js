// The search view: keeps the query in the URL, fetches one page of results, renders filters and results.
import * as api from "./api.js";
import { loadEager } from "./codelists.js";
import { fill, h } from "./dom.js";
import { Memory, renderFilters } from "./filters.js";
import { fmtCount } from "./format.js";
import { t } from "./i18n.js";
import { activeCount, clone, NUMBER_PARAMS, parseQuery, toParams, toggle } from "./query.js";
import { renderResults } from "./results.js";
import { loadBasketConfig, onBasketChange } from "./basket.js";
import * as fresh from "./fresh.js";

const memory = new Memory();
onBasketChange(() => render());
let query = parseQuery("");
let data = null;
let failure = null;
let controller = null;
let slots = null;
let listsReady = false;
let contributors = null;  // origins of the nodes in the current result
const nodeNames = new Map();

function nodeName(origin) { return nodeNames.get(origin) || origin; }

/** The partners' human names, asked once (GET /v1/nodes); a failure leaves the origins. */
let namesPromise = null;
function askNames() {
  namesPromise ??= api.nodes().then((list) => {
    for (const n of list) if (n.origin && n.name) nodeNames.set(n.origin, n.name);
  }).catch(() => { namesPromise = null; });
  return namesPromise;
}

/** Every collection of the result names its node; all matching groups belong to one of them,
 * so the nodes of all result pages' collections are exactly the contributing nodes. */
async function contributingNodes(params, body, signal) {
  const seen = new Set((body.collections?.items || []).map((c) => c.provenance?.node).filter(Boolean));
  const total = body.collections?.total || 0;
  if ((body.collections?.items || []).length >= total) return seen;
  const size = 100;
  for (let pageNo = 1; (pageNo - 1) * size < total; pageNo += 1) {
    const more = new URLSearchParams(params);
    for (const name of ["page", "collections_page", "page_size"]) more.delete(name);
    more.set("page_size", String(size));
    more.set("collections_page", String(pageNo));
    const next = await api.search(more, signal);
    for (const c of next.collections?.items || []) if (c.provenance?.node) seen.add(c.provenance.node);
  }
  return seen;
}

function filterString() {
  const params = toParams(query);
  for (const name of ["page", "collections_page", "page_size"]) params.delete(name);
  return params.toString();
}

function url(next) {
  const qs = toParams(next).toString();
  return qs ? `/?${qs}` : "/";
}

function go(next, { scrollToResults = false } = {}) {
  history.pushState(null, "", url(next));
  query = next;
  run();
  if (scrollToResults) slots?.results.scrollIntoView({ block: "start" });
}

const actions = {
  toggle: (param, value, on) => go(toggle(query, param, value, on)),
  // a biobank id belongs to the node that publishes it: filter by both
  only: (id, node) => go(node ? toggle(toggle(query, "biobank", id, true), "node", node, true)
    : toggle(query, "biobank", id, true)),
  submit: (form) => {
    const next = clone(query);
    for (const name of NUMBER_PARAMS) {
      const value = String(form.get(name) ?? "").trim();
      if (value) next.numbers[name] = value; else delete next.numbers[name];
    }
    if (JSON.stringify(next.numbers) === JSON.stringify(query.numbers)) return;
    next.page = 1;
    next.collections_page = 1;
    go(next);
  },
  clear: () => go({ ...parseQuery(""), page_size: query.page_size }),
  page: (param, n) => go({ ...clone(query), [param]: n }, { scrollToResults: true }),
  pageSize: (n) => go({ ...clone(query), page_size: n, page: 1, collections_page: 1 }),
  rerender: () => render(),
};

/** Remember the focused control so re-rendering does not move keyboard users. */
function focusState() {
  const el = document.activeElement;
  if (!el || !el.id || el === document.body) return null;
  return { id: el.id, value: "value" in el ? el.value : null, type: el.type, start: el.selectionStart };
}

function restoreFocus(state) {
  if (!state) return;
  const el = document.getElementById(state.id);
  if (!el || el.disabled) return;
  if (state.type === "text" || state.type === "number") {
    el.value = state.value;
    if (state.type === "text" && state.start !== null) el.setSelectionRange(state.start, state.start);
  }
  el.focus({ preventScroll: true });
}

function render() {
  if (!slots) return;
  const focus = focusState();
  const active = activeCount(query);
  fill(slots.summary, t("filters.title"), active ? ` (${t("filters.active", { n: active })})` : "");
  fill(slots.filters, renderFilters(query, data, memory, actions));
  if (failure) {
    fill(slots.body, h("div", { class: "error", role: "alert" },
      h("p", {}, failure.invalid?.length ? t("results.invalid") : t("results.error", { msg: failure.message })),
      failure.invalid?.length ? h("ul", {}, failure.invalid.map((p) => h("li", {}, `${p.name}: ${p.reason}`))) : null));
  } else if (data) {
    fill(slots.body, renderResults(data, query, memory, actions,
      { contributors, nodeName, queryString: filterString() }));
  }
  restoreFocus(focus);
}

async function run() {
  controller?.abort();
  controller = new AbortController();
  const { signal } = controller;
  const params = toParams(query);
  slots.results.setAttribute("aria-busy", "true");
  slots.status.textContent = t("results.searching");
  try {
    const version = await fresh.currentVersion();  // before the search: no change is missed
    const [body] = await Promise.all([api.search(params, signal), listsReady ? null : loadEager(), askNames(),
      loadBasketConfig()]);
    listsReady = true;
    contributors = await contributingNodes(params, body, signal);
    data = body;
    failure = null;
    memory.learn(body);
    slots.status.textContent = t("results.total", { n: fmtCount(body.total) });
    fresh.loaded(version, params, body);
  } catch (error) {
    if (error.name === "AbortError") return;
    failure = error;
    slots.status.textContent = "";
    fresh.loaded(null, params, null);
  }
  render();
  slots.results.dataset.query = params.toString();
  slots.results.setAttribute("aria-busy", "false");
}

/** Show the search page for the current URL (first visit, link, or back/forward). */
export function showSearch(main) {
  const wide = window.matchMedia("(min-width: 900px)").matches;
  if (!slots || !main.contains(slots.results)) {
    slots = {
      summary: h("summary", { class: "filters-summary" }),
      filters: h("div", { class: "filters-slot" }),
      status: h("p", { class: "status sr-only", role: "status", id: "status" }),
      body: h("div", { id: "results-body" }),
    };
    slots.results = h("section", { id: "results", class: "results", "aria-labelledby": "results-title",
      "aria-busy": "true" }, h("h2", { id: "results-title", class: "sr-only" }, t("results.label")),
    slots.status, fresh.notice(() => run()), slots.body);
    fill(main, h("div", { class: "search-page" },
      h("div", { class: "intro" }, h("h1", {}, t("search.title")), h("p", { class: "lead" }, t("search.intro"))),
      h("div", { class: "layout" },
        h("details", { class: "filters-panel", open: wide }, slots.summary, slots.filters),
        slots.results)));
  }
  query = parseQuery(location.search);
  render();
  return run();
}

/** Re-draw in a new language without fetching again. */
export function relabelSearch(main) {
  if (!slots || !main.contains(slots.results)) return;
  const intro = main.querySelector(".intro");
  fill(intro, h("h1", {}, t("search.title")), h("p", { class: "lead" }, t("search.intro")));
  slots.results.querySelector("#results-title").textContent = t("results.label");
  if (data) slots.status.textContent = t("results.total", { n: fmtCount(data.total) });
  fresh.draw();
  render();
}
