// The request basket: collections a researcher selects, kept in localStorage so it survives
// navigation and reloads; "Request access" hands it to the Negotiator through the catalogue
// (POST /v1/negotiator/requests), or, with none configured, offers the contacts as an e-mail
// and a CSV (docs/negotiator.md).
import { cell, download } from "./csv.js";
import { h } from "./dom.js";
import { mailto } from "./format.js";
import { t } from "./i18n.js";

const KEY = "biobank-catalogue.basket";
const listeners = new Set();
let configured = null;  // null: not asked yet
let failure = null;     // the last refusal, shown until the basket changes
let sending = false;

function read() {
  try {
    const data = JSON.parse(localStorage.getItem(KEY) || "{}");
    return { items: Array.isArray(data.items) ? data.items : [], query: String(data.query || "") };
  } catch {
    return { items: [], query: "" };
  }
}

function write(state) {
  localStorage.setItem(KEY, JSON.stringify(state));
  failure = null;
  for (const fn of listeners) fn();
}

export function onBasketChange(fn) { listeners.add(fn); }

export function basketItems() { return read().items; }

export function inBasket(node, id) {
  return read().items.some((i) => i.id === id && i.node === node);
}

/** Add (or remove) one collection; `query` is the search that found it. */
export function toggleItem(item, query, on) {
  const state = read();
  const rest = state.items.filter((i) => !(i.id === item.id && i.node === item.node));
  write({ items: on ? [...rest, item] : rest, query: on ? query : state.query });
}

export function clearBasket() { write({ items: [], query: "" }); }

/** Ask once whether a Negotiator is configured (the search awaits this with its results). */
let asking = null;
export function loadBasketConfig() {
  asking ??= fetch("/v1/negotiator", { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : { configured: false }))
    .then((body) => { configured = Boolean(body.configured); })
    .catch(() => { configured = false; });
  return asking;
}

async function requestAccess(rerender) {
  const state = read();
  sending = true;
  failure = null;
  rerender();
  try {
    const response = await fetch("/v1/negotiator/requests", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ query: state.query, collections: state.items.map((i) => ({ id: i.id, node: i.node })) }),
    });
    let body = {};
    try { body = await response.json(); } catch { /* not JSON */ }
    if (response.ok && typeof body.redirectUrl === "string") {
      window.location.assign(body.redirectUrl);
      return;
    }
    failure = typeof body.detail === "string" ? body.detail : body.title || `HTTP ${response.status}`;
  } catch (error) {
    failure = error.message || "network error";
  } finally {
    sending = false;
  }
  rerender();
}

function emails(items) {
  return [...new Set(items.map((i) => i.email).filter((e) => mailto(e)))];
}

function mailHref(items, query) {
  const to = emails(items);
  if (!to.length) return null;
  const subject = t("basket.mail_subject");
  const lines = items.map((i) => `- ${i.name} (${i.id}), ${i.biobankName || i.biobank}`);
  const search = `${location.origin}/${query ? `?${query}` : ""}`;
  const body = t("basket.mail_body", { list: lines.join("\n"), url: search });
  return `mailto:${to.join(",")}?subject=${encodeURIComponent(subject)}&body=${encodeURIComponent(body)}`;
}

export const BASKET_COLUMNS = ["collection_id", "collection", "biobank_id", "biobank", "node", "node_name", "contact_email"];

export function basketCsv(items, nodeName) {
  const rows = items.map((i) => [i.id, i.name, i.biobank, i.biobankName, i.node, nodeName(i.node), i.email]);
  return `${[BASKET_COLUMNS, ...rows].map((r) => r.map(cell).join(",")).join("\r\n")}\r\n`;
}

/** The basket panel; `nodeName(origin)` gives a node's human name. */
export function renderBasket(nodeName, rerender) {
  const { items, query } = read();
  const title = h("h2", { id: "basket-title" }, t("basket.title", { n: items.length }));
  if (!items.length) {
    return h("section", { id: "basket", class: "basket", "aria-labelledby": "basket-title" },
      title, h("p", { class: "muted" }, t("basket.empty")));
  }
  const mail = mailHref(items, query);
  let actions;
  if (configured === true) {
    actions = [h("button", { type: "button", class: "primary", id: "request-access", disabled: sending,
      onclick: () => requestAccess(rerender) }, sending ? t("basket.sending") : t("basket.request"))];
  } else if (configured === false) {
    actions = [
      h("p", { class: "muted" }, t("basket.no_negotiator")),
      mail ? h("a", { class: "secondary button-link", id: "basket-mail", href: mail }, t("basket.mail")) : null,
      h("button", { type: "button", class: "secondary", id: "basket-csv",
        onclick: () => download(`request-contacts-${new Date().toISOString().slice(0, 10)}.csv`,
          basketCsv(items, nodeName)) }, "⤓ ", t("basket.csv")),
    ];
  } else {
    actions = [];
  }
  return h("section", { id: "basket", class: "basket", "aria-labelledby": "basket-title" },
    title,
    h("ul", { class: "basket-list" }, items.map((i) => h("li", { "data-basket": i.id },
      h("span", { class: "basket-name" }, i.name || i.id),
      h("span", { class: "muted basket-where" },
        t("basket.where", { biobank: i.biobankName || i.biobank || "", node: "\u0000" }).split("\u0000")[0],
        h("abbr", { class: "basket-node", title: i.node }, nodeName(i.node)),
        t("basket.where", { biobank: i.biobankName || i.biobank || "", node: "\u0000" }).split("\u0000")[1] ?? ""),
      h("button", { type: "button", class: "secondary small", "aria-label": t("basket.remove_one", { name: i.name || i.id }),
        onclick: () => toggleItem(i, query, false) }, t("basket.remove"))))),
    h("div", { class: "basket-actions" }, actions,
      h("button", { type: "button", class: "secondary", id: "basket-clear", onclick: clearBasket }, t("basket.clear"))),
    failure ? h("div", { class: "error", role: "alert", id: "basket-error" },
      h("p", {}, t("basket.refused", { msg: failure }))) : null);
}
