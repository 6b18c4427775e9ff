// The filter form: code-list checkboxes with facet counts, ranges, and code searches (ICD-10, ORPHA, biobank, collection).
import { find, label, load, loaded, rank } from "./codelists.js";
import { h, idPart } from "./dom.js";
import { countTitle, fmtCount } from "./format.js";
import { t } from "./i18n.js";
import { activeCount } from "./query.js";
import { suggestField } from "./suggest.js";

/** Checkbox groups: URL parameter, facet name in the search response, code list. */
const GROUPS = {
  sample_type: { facet: "sample_type", list: "sample-type" },
  storage_temperature: { facet: "storage_temperature", list: "storage-temperature" },
  sex: { facet: "sex", list: "sex" },
  chapter: { facet: "diagnosis_chapter", list: "icd10-chapter", param: "icd10" },
  duo: { facet: "use_conditions", list: "duo" },
  dataset_type: { facet: "dataset_type", list: "dataset-type" },
  country: { facet: "country", list: "country" },
};
const SHORT = 8;  // options shown before "Show all"
const expanded = new Set();

/** What the page has seen so far, so options do not vanish when a filter narrows the facets. */
export class Memory {
  constructor() {
    this.options = Object.fromEntries(Object.keys(GROUPS).map((k) => [k, new Set()]));
    this.biobanks = new Map();     // id -> name
    this.collections = new Map();  // id -> name
  }

  learn(data) {
    for (const [key, group] of Object.entries(GROUPS)) {
      for (const row of data.facets?.[group.facet] || []) this.options[key].add(String(row.code));
    }
    for (const row of data.counts?.biobank || []) this.name(this.biobanks, row);
    for (const row of data.counts?.collection || []) this.name(this.collections, row);
    for (const item of data.biobanks?.items || []) this.biobanks.set(item.id, item.name || item.id);
    for (const item of data.collections?.items || []) this.collections.set(item.id, item.name || item.id);
  }

  name(map, row) {
    const id = row.code ?? row.id;
    if (id !== undefined && (!map.has(id) || row.name)) map.set(id, row.name || map.get(id) || id);
  }
}

function chapterRange(entry) {
  if (!entry) return "";
  if (entry.range) return String(entry.range);
  if (Array.isArray(entry.ranges)) return entry.ranges.join(", ");
  const start = entry.start ?? entry.from ?? entry.first;
  const end = entry.end ?? entry.to ?? entry.last;
  return start && end ? `${start}-${end}` : "";
}

function chapterBounds(entry) {
  const range = chapterRange(entry);
  const parts = [...range.matchAll(/([A-Z]\d{2})\s*-\s*([A-Z]\d{2})/g)];
  return parts.map((m) => [m[1], m[2]]);
}

function isChapter(value) { return /^[IVXL]+$/.test(value); }

export function codeLabel(param, value) {
  if (param === "icd10") {
    if (isChapter(value)) return `${value} ${label("icd10-chapter", value)}`;
    return value;
  }
  if (param === "orpha") {
    const text = label("orpha", value);
    return text === value ? value : `${value} ${text}`;
  }
  const group = GROUPS[param];
  return group ? label(group.list, value) : value;
}

async function icd10Suggestions(text) {
  await load("icd10-chapter");
  const up = text.trim().toUpperCase();
  const out = [];
  if (/^[A-Z]\d{2}(\.[0-9A-Z]{1,4})?$/.test(up)) out.push({ value: up, label: t("f.code_prefix", { code: up }) });
  if (/^[A-Z]\d{2}-[A-Z]\d{2}$/.test(up)) out.push({ value: up, label: t("f.code_range", { code: up }) });
  const chapters = loaded("icd10-chapter") || new Map();
  if (/^[A-Z]\d{2}/.test(up)) {
    const key = up.slice(0, 3);
    for (const entry of chapters.values()) {
      if (chapterBounds(entry).some(([a, b]) => a <= key && key <= b)) out.push(chapterOption(entry));
    }
  }
  for (const entry of find("icd10-chapter", text)) out.push(chapterOption(entry));
  const seen = new Set();
  return out.filter((o) => !seen.has(o.value) && seen.add(o.value)).slice(0, 8);
}

function chapterOption(entry) {
  const range = chapterRange(entry);
  return { value: String(entry.code), label: `${entry.code} ${label("icd10-chapter", entry.code)}${range ? ` (${range})` : ""}` };
}

async function orphaSuggestions(text) {
  await load("orpha");
  const digits = /^(?:orpha:?)?\s*(\d+)$/i.exec(text.trim());
  const found = find("orpha", digits ? `orpha:${digits[1]}` : text);
  if (found.length === 0 && digits && !loaded("orpha")?.size) {
    return [{ value: `ORPHA:${digits[1]}`, label: `ORPHA:${digits[1]}` }];
  }
  return found.map((e) => ({ value: String(e.code), label: `${e.code} ${label("orpha", e.code)}` }));
}

function nameSuggestions(map) {
  return async (text) => {
    const needle = text.trim().toLowerCase();
    const out = [];
    for (const [id, name] of map) {
      if (String(name).toLowerCase().includes(needle) || String(id).toLowerCase().includes(needle)) {
        out.push({ value: id, label: name === id ? id : `${name} (${id})` });
      }
      if (out.length >= 8) break;
    }
    return out;
  };
}

function checkboxGroup(key, query, data, memory, actions) {
  const group = GROUPS[key];
  const param = group.param || key;
  const selected = new Set((query.filters[param] || []).filter((v) => key !== "chapter" || isChapter(v)));
  const counts = new Map((data?.facets?.[group.facet] || []).map((r) => [String(r.code), r.count]));
  const codes = [...new Set([...memory.options[key], ...selected])]
    .sort((a, b) => rank(group.list, a) - rank(group.list, b) || a.localeCompare(b));
  const open = expanded.has(key);
  const shown = open ? codes : codes.filter((c, i) => i < SHORT || selected.has(c));
  const legendKey = key === "chapter" ? "f.diagnosis_chapter" : `f.${key}`;
  const fieldset = h("fieldset", { class: "group", id: `g-${key}` }, h("legend", {}, t(legendKey)));
  if (codes.length === 0) fieldset.append(h("p", { class: "muted small" }, t("f.none")));
  for (const code of shown) {
    const id = `f-${key}-${idPart(code)}`;
    const text = key === "chapter" ? codeLabel("icd10", code) : label(group.list, code);
    fieldset.append(h("div", { class: "opt" },
      h("input", { type: "checkbox", id, value: code, checked: selected.has(code), "data-param": param,
        onchange: (e) => actions.toggle(param, code, e.target.checked) }),
      h("label", { for: id }, h("span", { class: "opt-label" }, text),
        counts.has(code) ? h("span", { class: "opt-count", title: countTitle(counts.get(code)) },
          fmtCount(counts.get(code))) : null)));
  }
  if (codes.length > SHORT) {
    fieldset.append(h("button", { type: "button", class: "link-button", id: `more-${key}`,
      "aria-expanded": String(open), "aria-controls": `g-${key}`,
      onclick: () => { if (open) expanded.delete(key); else expanded.add(key); actions.rerender(); } },
    open ? t("f.less") : t("f.more", { n: codes.length })));
  }
  return fieldset;
}

function chips(param, values, labelOf, actions) {
  if (values.length === 0) return null;
  return h("ul", { class: "chips" }, values.map((value) => {
    const text = labelOf(value);
    return h("li", { class: "chip" }, h("span", {}, text),
      h("button", { type: "button", class: "chip-remove", id: `rm-${param}-${idPart(value)}`,
        "aria-label": t("f.remove", { label: text }), onclick: () => actions.toggle(param, value, false) }, "×"));
  }));
}

function rangeGroup(key, lowName, highName, query, opts) {
  const input = (name) => h("div", { class: "range-field" },
    h("label", { for: `f-${name}` }, t(`f.${name}`)),
    h("input", { id: `f-${name}`, name, type: "number", inputmode: "numeric", step: 1, class: "text",
      min: opts.min, max: opts.max, value: query.numbers[name] ?? "" }));
  return h("fieldset", { class: "group" }, h("legend", {}, t(`f.${key}`)),
    h("div", { class: "range" }, input(lowName), input(highName)));
}

/** The whole filter form for `query`, with counts from `data` (may be null while loading). */
export function renderFilters(query, data, memory, actions) {
  const active = activeCount(query);
  const icdOther = (query.filters.icd10 || []).filter((v) => !isChapter(v));
  const form = h("form", { id: "filters", class: "filters", role: "search", "aria-label": t("filters.label"),
    onsubmit: (e) => { e.preventDefault(); actions.submit(new FormData(e.target)); },
    onchange: (e) => { if (e.target.type === "number") actions.submit(new FormData(e.currentTarget)); } },
  h("div", { class: "filters-head" },
    h("h2", {}, t("filters.title"), active ? h("span", { class: "pill" }, t("filters.active", { n: active })) : null),
    active ? h("button", { type: "button", class: "link-button", id: "clear-filters", onclick: actions.clear },
      t("filters.clear")) : null),
  checkboxGroup("sample_type", query, data, memory, actions),
  checkboxGroup("storage_temperature", query, data, memory, actions),
  checkboxGroup("sex", query, data, memory, actions),
  rangeGroup("age", "age_min", "age_max", query, { min: 0, max: 150 }),
  rangeGroup("period", "period_from", "period_to", query, { min: 1900, max: 2100 }),
  h("div", { class: "group" },
    suggestField({ id: "f-icd10", label: t("f.icd10"), hint: t("f.icd10.hint"), search: icd10Suggestions,
      onPick: (v) => actions.toggle("icd10", v, true) }),
    chips("icd10", icdOther, (v) => codeLabel("icd10", v), actions)),
  checkboxGroup("chapter", query, data, memory, actions),
  h("div", { class: "group" },
    suggestField({ id: "f-orpha", label: t("f.orpha"), hint: t("f.orpha.hint"), search: orphaSuggestions,
      onPick: (v) => actions.toggle("orpha", v, true) }),
    chips("orpha", query.filters.orpha || [], (v) => codeLabel("orpha", v), actions)),
  checkboxGroup("duo", query, data, memory, actions),
  checkboxGroup("dataset_type", query, data, memory, actions),
  checkboxGroup("country", query, data, memory, actions),
  h("div", { class: "group" },
    suggestField({ id: "f-biobank", label: t("f.biobank"), hint: t("f.biobank.hint"),
      search: nameSuggestions(memory.biobanks), onPick: (v) => actions.toggle("biobank", v, true) }),
    chips("biobank", query.filters.biobank || [], (v) => memory.biobanks.get(v) || v, actions)),
  h("div", { class: "group" },
    suggestField({ id: "f-collection", label: t("f.collection"), hint: t("f.collection.hint"),
      search: nameSuggestions(memory.collections), onPick: (v) => actions.toggle("collection", v, true) }),
    chips("collection", query.filters.collection || [], (v) => memory.collections.get(v) || v, actions)),
  (query.filters.node || []).length ? h("div", { class: "group" },
    h("p", { class: "group-label" }, t("f.node")),
    chips("node", query.filters.node, (v) => v, actions)) : null,
  h("div", { class: "filters-actions" }, h("button", { type: "submit", class: "primary", id: "apply" }, t("filters.apply"))));
  return form;
}
