// The results region: total, charts, partner status, biobank and collection cards, table, paging, CSV.
import { barChart } from "./chart.js";
import { label, loaded } from "./codelists.js";
import { download, toCsv } from "./csv.js";
import { h, idPart } from "./dom.js";
import { countTitle, fmtCount, fmtTime, mailto, webUrl } from "./format.js";
import { t } from "./i18n.js";
import { nodeHref } from "./nodes.js";
import { inBasket, renderBasket, toggleItem } from "./basket.js";

let collectionView = "cards";

function nodeStatus(data) {
  return new Map((data.nodes || []).map((n) => [n.origin, n]));
}

function badges(status) {
  if (!status) return [];
  const out = [];
  if (status.stale) {
    out.push(h("span", { class: "badge stale", title: t("badge.stale.title") }, t("badge.stale")));
  }
  const alerts = Array.isArray(status.alerts) ? status.alerts.length : Number(status.alerts || 0);
  if (alerts > 0) {
    out.push(h("span", { class: "badge alert", title: t("badge.alert.title") }, "⚠ ", t("badge.alert")));
  }
  return out;
}

function provenance(item, statuses) {
  const p = item.provenance;
  if (!p) return null;
  const status = statuses.get(p.node);
  const parts = t("prov.line", { node: "\u0000", size: fmtCount(p.checkpoint_size), time: fmtTime(p.verified_at) })
    .split("\u0000");
  return h("p", { class: "provenance", "aria-label": t("prov.label") },
    parts[0], h("a", { href: nodeHref(p.node), "data-link": true }, p.node), parts[1] ?? "", " ",
    badges(status));
}

function list(listName, codes) {
  if (!codes || codes.length === 0) return h("span", { class: "muted" }, t("card.none"));
  return h("ul", { class: "tags" }, codes.map((code) => h("li", { title: code }, label(listName, code))));
}

function contact(person) {
  const href = mailto(person?.email);
  if (!href) return h("span", { class: "muted" }, t("card.none"));
  const who = [person.name, person.role].filter(Boolean).join(", ");
  return h("span", {}, who ? `${who} · ` : "", h("a", { href }, person.email));
}

function row(key, value) {
  return [h("dt", {}, t(key)), h("dd", {}, value)];
}

/** A count as a span: the number, or the range with a tooltip saying what it means. */
export function countSpan(value, cls) {
  return h("span", { class: cls, title: countTitle(value) }, fmtCount(value));
}

function samples(item) {
  const declared = item.count_source === "declared";
  return h("p", { class: "samples" },
    declared ? h("span", { class: "samples-n" }, fmtCount(item.declared_size))
      : countSpan(item.samples, "samples-n"),
    " ", h("span", { class: "samples-what" }, t("card.samples")),
    declared ? h("span", { class: "pill muted-pill", title: t("card.declared_note") }, t("card.declared")) : null);
}

/** A marker for a record the partner names but does not publish (its name is then unknown). */
function unpublished(what) {
  return h("span", { class: "pill muted-pill unpublished", title: t(`card.unpublished_${what}_note`) },
    t(`card.unpublished_${what}`));
}

/** A declared age range in its unit: "2–88 years", "from 2 years", "up to 88 years". */
function ageText(age) {
  if (!age || (age.min == null && age.max == null)) return null;
  const unit = t(`unit.${age.unit || "years"}`);
  if (age.min != null && age.max != null) return t("card.age.range", { min: age.min, max: age.max, unit });
  return age.min != null ? t("card.age.from", { min: age.min, unit }) : t("card.age.to", { max: age.max, unit });
}

function biobankCard(item, statuses, actions) {
  const url = webUrl(item.url);
  const lone = item.collections === 0 && item.samples?.max === 0;
  return h("article", { class: "card", "data-biobank": item.id },
    h("header", { class: "card-head" },
      h("h4", {}, item.name || item.id,
        item.acronym ? h("span", { class: "acronym" }, ` (${item.acronym})`) : null),
      h("p", { class: "card-sub" }, item.country ? label("country", item.country) : null,
        item.published === false ? unpublished("biobank") : null)),
    lone ? h("p", { class: "samples muted" }, t("card.no_collections"))
      : h("p", { class: "samples" }, countSpan(item.samples, "samples-n"), " ",
        h("span", { class: "samples-what" }, t("card.samples"))),
    item.description ? h("p", { class: "desc" }, item.description) : null,
    h("dl", { class: "facts" },
      row("card.contact", contact(item.contact)),
      url ? row("card.website", h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, url)) : null,
      row("card.quality", list("quality-standard", item.quality_standards))),
    provenance(item, statuses),
    h("button", { type: "button", class: "secondary small", onclick: () => actions.only(item.id, item.origin ?? item.provenance?.node) },
      t("card.only_biobank")));
}

/** A toggle (aria-pressed) with a constant name; the card's title says which collection. */
function basketButton(item, biobankName, query) {
  const node = item.provenance?.node;
  if (!node) return null;
  const on = inBasket(node, item.id);
  const key = `${idPart(node)}-${idPart(item.id)}`;
  return h("button", { type: "button", class: on ? "primary small in-basket" : "secondary small",
    id: `basket-${key}`, "aria-pressed": String(on), "aria-describedby": `title-${key}`,
    onclick: () => toggleItem({ id: item.id, node, name: item.name || item.id, biobank: item.biobank,
      biobankName: biobankName(item.biobank), email: item.contact?.email || "" }, query, !on) },
  t("basket.add"));
}

function collectionCard(item, statuses, biobankName, actions, query) {
  const age = ageText(item.age);
  return h("article", { class: "card", "data-collection": item.id },
    h("header", { class: "card-head" },
      h("h4", { id: item.provenance?.node ? `title-${idPart(item.provenance.node)}-${idPart(item.id)}` : null },
        item.name || item.id,
        item.acronym ? h("span", { class: "acronym" }, ` (${item.acronym})`) : null),
      h("p", { class: "card-sub" }, item.biobank ? biobankName(item.biobank) : null,
        item.biobank_published === false ? unpublished("biobank") : null,
        item.published === false ? unpublished("collection") : null)),
    samples(item),
    item.description ? h("p", { class: "desc" }, item.description) : null,
    h("dl", { class: "facts" },
      item.count_source !== "declared" && item.declared_size != null
        ? row("card.declared_size", fmtCount(item.declared_size)) : null,
      item.subjects != null ? row("card.subjects", fmtCount(item.subjects)) : null,
      age ? row("card.age", age) : null,
      item.sample_types?.length ? row("card.sample_types", list("sample-type", item.sample_types)) : null,
      item.sex?.length ? row("card.sex", list("sex", item.sex)) : null,
      row("card.use", list("duo", item.use_conditions)),
      row("card.datasets", list("dataset-type", item.dataset_types)),
      item.design?.length ? row("card.design", list("collection-design", item.design)) : null,
      item.quality_standards?.length ? row("card.quality", list("quality-standard", item.quality_standards)) : null,
      row("card.contact", contact(item.contact))),
    provenance(item, statuses),
    h("div", { class: "card-actions" },
      basketButton(item, biobankName, query),
      h("button", { type: "button", class: "secondary small",
        onclick: () => actions.toggle("collection", item.id, true) }, t("card.only_collection"))));
}

function collectionTable(items, biobankName, query) {
  const words = (listName, codes) => (codes || []).map((c) => label(listName, c)).join(", ");
  return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": t("view.table") },
    h("table", { class: "results-table", id: "collections-table" },
      h("thead", {}, h("tr", {}, ["col.name", "col.biobank", "col.samples", "col.source", "col.use",
        "col.datasets", "col.node", "col.request"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, items.map((item) => h("tr", { "data-collection": item.id },
        h("th", { scope: "row", id: item.provenance?.node
          ? `title-${idPart(item.provenance.node)}-${idPart(item.id)}` : null }, item.name || item.id),
        h("td", {}, biobankName(item.biobank)),
        h("td", { class: "num", title: countTitle(item.samples) }, fmtCount(item.samples)),
        h("td", {}, t(item.count_source === "declared" ? "source.declared" : "source.groups")),
        h("td", {}, words("duo", item.use_conditions)),
        h("td", {}, words("dataset-type", item.dataset_types)),
        h("td", {}, item.provenance?.node ?? ""),
        h("td", {}, basketButton(item, biobankName, query)))))));
}

function pager(what, block, pageParam, actions) {
  const pages = Math.max(1, Math.ceil((block?.total || 0) / (block?.page_size || 20)));
  if (pages <= 1) return null;
  const page = block.page || 1;
  return h("nav", { class: "pager", "aria-label": t("page.label", { what }) },
    h("button", { type: "button", class: "secondary", disabled: page <= 1, id: `${pageParam}-prev`,
      onclick: () => actions.page(pageParam, page - 1) }, t("page.prev")),
    h("span", {}, t("page.of", { p: page, n: pages })),
    h("button", { type: "button", class: "secondary", disabled: page >= pages, id: `${pageParam}-next`,
      onclick: () => actions.page(pageParam, page + 1) }, t("page.next")));
}

/** The partners whose groups or collections make up this result, by name (origin on hover). */
function nodesStrip(data, contributors, nodeName) {
  if (!contributors) return null;
  const statuses = nodeStatus(data);
  const origins = [...contributors].sort((a, b) => nodeName(a).localeCompare(nodeName(b)));
  return h("div", { class: "nodes-strip", id: "partners" }, h("h3", { class: "strip-title" }, t("nodes.in_results")),
    origins.length ? h("ul", {}, origins.map((origin) => h("li", {},
      h("a", { href: nodeHref(origin), "data-link": true, title: origin, "data-origin": origin }, nodeName(origin)),
      " ", badges(statuses.get(origin)))))
      : h("p", { class: "muted" }, t("nodes.none")));
}

/** The sample-type chart rows: with a sample-type filter active, only the chosen types (and
 * their sub-types), whose facet counts are then exactly the matched samples; the other
 * types' counts stay in the filter list. */
function sampleTypeRows(data, query) {
  const rows = data.facets?.sample_type || [];
  const chosen = query.filters?.sample_type || [];
  if (!chosen.length) return rows;
  const parents = new Map([...(loaded("sample-type") || new Map()).values()].map((e) => [String(e.code), e.parent]));
  const keep = (code) => {
    for (let c = code, seen = 0; c && seen < 20; c = parents.get(c), seen += 1) if (chosen.includes(c)) return true;
    return false;
  };
  return rows.filter((r) => keep(String(r.code)));
}

/** Render the whole results region for one search response. */
export function renderResults(data, query, memory, actions, { contributors = null, nodeName = (o) => o, queryString = "" } = {}) {
  const statuses = nodeStatus(data);
  const biobankName = (id) => memory.biobanks.get(id) || id;
  const biobanks = data.biobanks?.items || [];
  const collections = data.collections?.items || [];
  const country = (data.counts?.country || []).map((r) => ({ label: label("country", r.code), value: r.count }));
  const types = sampleTypeRows(data, query).map((r) => ({ label: label("sample-type", r.code), value: r.count }));
  const empty = biobanks.length === 0 && collections.length === 0;
  const viewButton = (mode) => h("button", { type: "button", class: "toggle", id: `view-${mode}`,
    "aria-pressed": String(collectionView === mode),
    onclick: () => { collectionView = mode; actions.rerender(); } }, t(`view.${mode}`));
  return [
    h("div", { class: "summary" },
      h("p", { class: "total", id: "total", title: countTitle(data.total) },
        t("results.total", { n: fmtCount(data.total) })),
      data.donors ? h("p", { class: "donors muted", id: "donors", title: countTitle(data.donors) },
        t("results.donors", { n: fmtCount(data.donors) })) : null,
      h("div", { class: "per-page" },
        h("label", { for: "page-size" }, t("results.per_page")),
        h("select", { id: "page-size", onchange: (e) => actions.pageSize(Number(e.target.value)) },
          [20, 50, 100].map((n) => h("option", { value: n,
            selected: (query.page_size || data.collections?.page_size || 20) === n }, String(n)))))),
    renderBasket(nodeName, actions.rerender),
    nodesStrip(data, contributors, nodeName),
    empty ? h("p", { class: "notice" }, t("results.none")) : null,
    empty ? null : h("div", { class: "charts" }, barChart(t("chart.country"), country, "country"),
      barChart(t("chart.sample_type"), types, "sample_type")),
    biobanks.length ? h("section", { class: "block", "aria-labelledby": "biobanks-title" },
      h("h3", { id: "biobanks-title" }, t("biobanks.title", { n: fmtCount(data.biobanks.total ?? biobanks.length) })),
      h("div", { class: "cards", id: "biobank-cards" }, biobanks.map((b) => biobankCard(b, statuses, actions))),
      pager(t("biobanks.title", { n: "" }).replace(/[(（）)]/g, "").trim(), data.biobanks, "page", actions)) : null,
    collections.length ? h("section", { class: "block", "aria-labelledby": "collections-title" },
      h("div", { class: "block-head" },
        h("h3", { id: "collections-title" },
          t("collections.title", { n: fmtCount(data.collections.total ?? collections.length) })),
        h("div", { class: "tools" },
          h("div", { class: "segmented", role: "group", "aria-label": t("view.label") },
            viewButton("cards"), viewButton("table")),
          h("button", { type: "button", class: "secondary", id: "export-csv",
            onclick: () => download(`collections-${new Date().toISOString().slice(0, 10)}.csv`, toCsv(collections)) },
          "⤓ ", t("csv.export")))),
      collectionView === "table"
        ? collectionTable(collections, biobankName, queryString)
        : h("div", { class: "cards", id: "collection-cards" },
          collections.map((c) => collectionCard(c, statuses, biobankName, actions, queryString))),
      pager(t("collections.title", { n: "" }).replace(/[(（）)]/g, "").trim(), data.collections,
        "collections_page", actions)) : null,
  ];
}
