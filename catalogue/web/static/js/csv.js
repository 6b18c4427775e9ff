// CSV export of the collections table: RFC 4180 quoting, UTF-8 with BOM, downloaded from a Blob.
// A count is its interval: samples_min and samples_max (equal when exact, empty when declared).
// Every card field: published / biobank_published (true or false: is the record published),
// the record's own declarations (declared_size, subjects, age_min, age_max, age_unit).

export const COLUMNS = [
  "id", "name", "biobank", "published", "biobank_published", "samples_min", "samples_max",
  "count_source", "declared_size", "subjects", "age_min", "age_max", "age_unit", "use_conditions",
  "dataset_types", "design", "contact_email", "node", "checkpoint_size", "verified_at", "description",
];

/** Quote a cell when needed; a leading = + - @ gets a ' so spreadsheets do not run it as a formula. */
export function cell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function collectionRow(item) {
  const join = (list) => (Array.isArray(list) ? list.join("; ") : list ?? "");
  return [
    item.id, item.name, item.biobank, item.published, item.biobank_published,
    item.samples?.min, item.samples?.max, item.count_source,
    item.declared_size, item.subjects, item.age?.min, item.age?.max, item.age?.unit,
    join(item.use_conditions), join(item.dataset_types), join(item.design), item.contact?.email,
    item.provenance?.node, item.provenance?.checkpoint_size, item.provenance?.verified_at,
    item.description,
  ];
}

export function toCsv(items) {
  const lines = [COLUMNS, ...items.map(collectionRow)].map((row) => row.map(cell).join(","));
  return `${lines.join("\r\n")}\r\n`;
}

export function download(filename, text) {
  const blob = new Blob(["\ufeff", text], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
