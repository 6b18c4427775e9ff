// Partner node pages: the list of enrolled nodes and one node's status, policy and alerts.
import * as api from "./api.js";
import { label, load } from "./codelists.js";
import { fill, h } from "./dom.js";
import { fmtCount, fmtTime, webUrl } from "./format.js";
import { t } from "./i18n.js";

export function nodeHref(origin) {
  return `/nodes/${api.nodePath(origin)}`;
}

function lastHarvest(node) {
  return node.last_harvest ?? node.last_success_at ?? node.verified_at ?? null;
}

function alertCount(node) {
  return Array.isArray(node.alerts) ? node.alerts.length : Number(node.alerts || 0);
}

function statusText(node) {
  const parts = [];
  if (node.stale) parts.push(h("span", { class: "badge stale" }, t("node.stale")));
  if (alertCount(node) > 0) parts.push(h("span", { class: "badge alert" }, "⚠ ", t("node.alerting")));
  return parts.length ? parts : h("span", { class: "badge ok" }, "✓ ", t("node.ok"));
}

function describe(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
  }
  return String(value);
}

function checkpointText(label, text) {
  return text ? h("details", { class: "evidence" }, h("summary", {}, label), h("pre", {}, text)) : null;
}

function alertItem(item) {
  return h("li", {},
    h("strong", {}, item.kind || ""), " ", item.message || "",
    h("span", { class: "muted" }, ` — ${fmtTime(item.created_at || item.time)}`),
    checkpointText(t("node.trusted_cp"), item.trusted_checkpoint),
    checkpointText(t("node.new_cp"), item.new_checkpoint));
}

function rejectionItem(item) {
  const problems = Array.isArray(item.problems) ? item.problems : [item.problems];
  return h("li", {},
    h("span", { class: "mono" }, `#${item.index} ${item.kind || ""} ${item.id || ""}`),
    h("ul", {}, problems.filter(Boolean).map((p) => h("li", {}, typeof p === "string" ? p : describe(p)))));
}

function issueList(items, emptyKey, renderItem) {
  if (!Array.isArray(items)) {
    const n = Number(items || 0);
    return n > 0 ? h("p", {}, fmtCount(n)) : h("p", { class: "muted" }, t(emptyKey));
  }
  if (items.length === 0) return h("p", { class: "muted" }, t(emptyKey));
  return h("ul", { class: "issues" }, items.slice(0, 100).map((item) => (
    typeof item === "object" && item !== null ? renderItem(item) : h("li", {}, String(item)))));
}

function policy(p) {
  if (!p || Object.keys(p).length === 0) return h("p", { class: "muted" }, t("node.policy.none"));
  const fields = Array.isArray(p.published_fields) ? p.published_fields.join(", ") : describe(p.published_fields);
  return h("dl", { class: "facts wide", id: "node-policy" },
    h("dt", {}, t("node.k")), h("dd", {}, p.k ?? "—"),
    h("dt", {}, t("node.age_band")), h("dd", {}, p.age_band ?? "—"),
    h("dt", {}, t("node.period_width")), h("dd", {}, p.period_width ?? "—"),
    h("dt", {}, t("node.diagnosis_precision")), h("dd", {}, describe(p.diagnosis_precision) || "—"),
    h("dt", {}, t("node.published_fields")), h("dd", {}, fields || "—"));
}

/** /nodes/{origin}: one partner's status. */
export async function renderNode(main, origin) {
  fill(main, h("p", { class: "muted" }, t("loading")));
  let node;
  try {
    [node] = await Promise.all([api.node(origin), load("country")]);
  } catch (error) {
    const text = error.status === 404 ? t("node.not_found", { origin }) : t("node.error", { msg: error.message });
    fill(main, h("p", { class: "error", role: "alert" }, text),
      h("p", {}, h("a", { href: "/nodes", "data-link": true }, `← ${t("node.back")}`)));
    return;
  }
  const url = webUrl(node.url);
  fill(main, h("article", { class: "page node-page" },
    h("p", { class: "crumbs" }, h("a", { href: "/nodes", "data-link": true }, `← ${t("node.back")}`)),
    h("h1", {}, t("node.title"), ": ", h("span", { class: "mono", id: "node-origin" }, node.origin)),
    h("div", { class: "panel" },
      h("dl", { class: "facts wide" },
        h("dt", {}, t("node.origin")), h("dd", { class: "mono" }, node.origin),
        h("dt", {}, t("node.name")), h("dd", {}, node.name || "—"),
        h("dt", {}, t("node.country")), h("dd", {}, node.country ? label("country", node.country) : "—"),
        h("dt", {}, t("node.url")), h("dd", {}, url ? h("a", { href: url, rel: "noopener noreferrer" }, url) : "—"),
        h("dt", {}, t("node.status")), h("dd", { id: "node-status" }, statusText(node)),
        h("dt", {}, t("node.last_harvest")), h("dd", {}, fmtTime(lastHarvest(node))),
        node.last_error ? [h("dt", {}, t("node.last_error")), h("dd", { class: "error-text" }, node.last_error)] : null,
        h("dt", {}, t("node.tree_size")), h("dd", { id: "node-tree-size" }, fmtCount(node.tree_size ?? 0)))),
    h("section", { class: "panel" }, h("h2", {}, t("node.policy")), policy(node.policy)),
    h("section", { class: "panel" }, h("h2", {}, t("node.alerts")), issueList(node.alert_list ?? node.alerts, "node.no_alerts", alertItem)),
    h("section", { class: "panel" }, h("h2", {}, t("node.rejections")),
      issueList(node.rejection_report ?? node.rejections, "node.no_rejections", rejectionItem))));
}

/** /nodes: every enrolled partner with its status. */
export async function renderNodeList(main) {
  fill(main, h("p", { class: "muted" }, t("loading")));
  let nodes;
  try {
    [nodes] = await Promise.all([api.nodes(), load("country")]);
  } catch (error) {
    fill(main, h("p", { class: "error", role: "alert" }, t("node.error", { msg: error.message })));
    return;
  }
  fill(main, h("article", { class: "page" },
    h("h1", {}, t("nodes.title")), h("p", { class: "lead" }, t("nodes.intro")),
    nodes.length === 0 ? h("p", { class: "notice" }, t("nodes.none")) : h("div", { class: "table-wrap" },
      h("table", { class: "results-table", id: "nodes-table" },
        h("caption", { class: "sr-only" }, t("nodes.caption")),
        h("thead", {}, h("tr", {}, ["node.origin", "node.name", "node.country", "node.last_harvest",
          "node.tree_size", "node.status"].map((k) => h("th", { scope: "col" }, t(k))))),
        h("tbody", {}, nodes.map((n) => h("tr", {},
          h("th", { scope: "row" }, h("a", { href: nodeHref(n.origin), "data-link": true, class: "mono" }, n.origin)),
          h("td", {}, n.name || ""), h("td", {}, n.country ? label("country", n.country) : ""),
          h("td", {}, fmtTime(lastHarvest(n))), h("td", { class: "num" }, fmtCount(n.tree_size ?? 0)),
          h("td", {}, statusText(n)))))))));
}
