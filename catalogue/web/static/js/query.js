// The search query as plain data, read from and written to the URL query string.

/** Repeatable filter parameters of /v1/search, in the order they appear in URLs. */
export const LIST_PARAMS = [
  "sample_type", "storage_temperature", "sex", "icd10", "orpha", "duo", "dataset_type",
  "country", "biobank", "collection", "node",
];
/** Whole-number parameters. */
export const NUMBER_PARAMS = ["age_min", "age_max", "period_from", "period_to"];
export const PAGE_PARAMS = ["page", "collections_page", "page_size"];

/** Parse a query string ("?a=1&a=2") into {filters: {name: [values]}, numbers, page...}. */
export function parseQuery(search) {
  const params = new URLSearchParams(search);
  const query = { filters: {}, numbers: {}, page: 1, collections_page: 1, page_size: null };
  for (const name of LIST_PARAMS) {
    const values = params.getAll(name).map((v) => v.trim()).filter(Boolean);
    query.filters[name] = [...new Set(values)];
  }
  for (const name of NUMBER_PARAMS) {
    const value = params.get(name);
    if (value !== null && value.trim() !== "") query.numbers[name] = value.trim();
  }
  for (const name of PAGE_PARAMS) {
    const value = Number.parseInt(params.get(name) || "", 10);
    if (Number.isInteger(value) && value > 0) query[name] = value;
  }
  return query;
}

/** The URLSearchParams for a query: same order every time, so equal searches share a URL. */
export function toParams(query) {
  const params = new URLSearchParams();
  for (const name of LIST_PARAMS) {
    for (const value of query.filters[name] || []) params.append(name, value);
  }
  for (const name of NUMBER_PARAMS) {
    if (query.numbers[name] !== undefined && query.numbers[name] !== "") {
      params.append(name, query.numbers[name]);
    }
  }
  if (query.page > 1) params.append("page", String(query.page));
  if (query.collections_page > 1) params.append("collections_page", String(query.collections_page));
  if (query.page_size) params.append("page_size", String(query.page_size));
  return params;
}

export function clone(query) {
  return {
    ...query,
    filters: Object.fromEntries(Object.entries(query.filters).map(([k, v]) => [k, [...v]])),
    numbers: { ...query.numbers },
  };
}

/** A copy with one filter value added or removed; any filter change returns to page 1. */
export function toggle(query, name, value, on) {
  const next = clone(query);
  const values = next.filters[name] || [];
  next.filters[name] = on ? [...new Set([...values, value])] : values.filter((v) => v !== value);
  next.page = 1;
  next.collections_page = 1;
  return next;
}

export function activeCount(query) {
  return LIST_PARAMS.reduce((n, name) => n + (query.filters[name] || []).length, 0)
    + Object.keys(query.numbers).length;
}
