// Horizontal bar charts drawn as inline SVG; a count interval draws solid to its lower end and
// hatched on to its upper end.
import { h, s } from "./dom.js";
import { countMin, countTitle, countValue, fmtCount, isBound } from "./format.js";
import { t } from "./i18n.js";

const WIDTH = 420;
const ROW = 26;
const LABEL_W = 150;
const VALUE_W = 70;
const MAX_ROWS = 10;

let chartSeq = 0;

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A <figure> with a bar chart of `items` ([{label, value}]), largest first. */
export function barChart(title, items, key = null) {
  chartSeq += 1;
  const id = `chart-${chartSeq}`;
  const rows = [...items].sort((a, b) => countValue(b.value) - countValue(a.value)).slice(0, MAX_ROWS);
  const figure = h("figure", { class: "chart", "data-chart": key }, h("figcaption", { id: `${id}-title` }, title));
  if (rows.length === 0) {
    figure.append(h("p", { class: "muted" }, t("chart.empty")));
    return figure;
  }
  const max = Math.max(1, ...rows.map((r) => countValue(r.value)));
  const height = rows.length * ROW + 4;
  const barArea = WIDTH - LABEL_W - VALUE_W;
  const summary = rows.map((r) => `${r.label}: ${fmtCount(r.value)}`).join("; ");
  const svg = s("svg", {
    viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-labelledby": `${id}-title ${id}-desc`,
    class: "chart-svg", preserveAspectRatio: "xMinYMin meet",
  }, s("desc", { id: `${id}-desc` }, summary),
  s("defs", {}, s("pattern", {
    id: `${id}-hatch`, width: 6, height: 6, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)",
  }, s("rect", { width: 6, height: 6, class: "hatch-bg" }),
  s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }))));
  let anyBound = false;
  rows.forEach((row, i) => {
    const y = i * ROW + 2;
    const bound = isBound(row.value);
    anyBound ||= bound;
    const width = Math.max(2, Math.round((countValue(row.value) / max) * barArea));
    const solid = bound ? Math.round((countMin(row.value) / max) * barArea) : width;
    const title = countTitle(row.value);
    svg.append(s("g", { class: bound ? "bar bound" : "bar" },
      s("title", {}, `${row.label}: ${fmtCount(row.value)}${title ? ` (${title})` : ""}`),
      s("text", { x: LABEL_W - 8, y: y + ROW / 2, class: "bar-label", "text-anchor": "end",
        "dominant-baseline": "middle" }, clip(row.label, 20)),
      bound ? s("rect", { x: LABEL_W, y: y + 4, width, height: ROW - 8, rx: 3,
        class: "range", fill: `url(#${id}-hatch)` }) : null,
      s("rect", { x: LABEL_W, y: y + 4, width: solid, height: ROW - 8, rx: 3 }),
      s("text", { x: LABEL_W + width + 6, y: y + ROW / 2, class: "bar-value",
        "dominant-baseline": "middle" }, fmtCount(row.value))));
  });
  figure.append(svg);
  if (anyBound) figure.append(h("p", { class: "chart-note" }, t("chart.bound")));
  return figure;
}
