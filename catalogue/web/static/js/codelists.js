// Code lists from the catalogue, fetched once each and cached; large ones only when first searched.
import { codelist } from "./api.js";
import { lang } from "./i18n.js";

/** Small lists the page needs for labels on first render. ORPHA (and any ICD-10 code list) load lazily. */
export const EAGER = [
  "sample-type", "storage-temperature", "sex", "dataset-type", "duo", "country",
  "quality-standard", "collection-design", "icd10-chapter",
];

const lists = new Map();    // name -> Map(code -> entry)
const pending = new Map();  // name -> Promise<Map|null>
const ranks = new Map();    // name -> Map(code -> position)

/** Load a code list (null when the catalogue does not offer it). */
export function load(name) {
  if (!pending.has(name)) {
    const promise = codelist(name)
      .then((body) => {
        const byCode = new Map((body.codes || []).map((entry) => [String(entry.code), entry]));
        lists.set(name, byCode);
        return byCode;
      })
      .catch(() => {
        lists.set(name, new Map());
        return null;
      });
    pending.set(name, promise);
  }
  return pending.get(name);
}

export function loadEager() {
  return Promise.all(EAGER.map(load));
}

export function loaded(name) { return lists.get(name) || null; }

/** The label of `code` in the current language, falling back to English, then to the code. */
export function label(name, code) {
  const entry = lists.get(name)?.get(String(code));
  if (!entry) return String(code);
  const text = entry[lang()] || entry.en || String(code);
  // Some lists (DUO) use lower-case term names; start labels with a capital like the others.
  const shown = text.charAt(0).toUpperCase() + text.slice(1);
  return entry.shorthand ? `${shown} (${entry.shorthand})` : shown;
}

/** Position of a code in its list, for a stable order of filter options. */
export function rank(name, code) {
  if (!ranks.has(name) && lists.has(name)) {
    ranks.set(name, new Map([...lists.get(name).keys()].map((key, i) => [key, i])));
  }
  return ranks.get(name)?.get(String(code)) ?? Number.MAX_SAFE_INTEGER;
}

/** Entries of a loaded list whose code or label (in any language) contains `query`. */
export function find(name, query, limit = 8) {
  const list = lists.get(name);
  if (!list || !query) return [];
  const needle = query.trim().toLowerCase();
  const exact = [];
  const starts = [];
  const contains = [];
  for (const entry of list.values()) {
    const code = String(entry.code).toLowerCase();
    const words = [entry.en, entry.zh].filter(Boolean).map((w) => String(w).toLowerCase());
    if (code === needle || code.endsWith(`:${needle}`)) exact.push(entry);
    else if (code.startsWith(needle) || words.some((w) => w.startsWith(needle))) starts.push(entry);
    else if (code.includes(needle) || words.some((w) => w.includes(needle))) contains.push(entry);
    if (exact.length >= limit) break;
  }
  return [...exact, ...starts, ...contains].slice(0, limit);
}
