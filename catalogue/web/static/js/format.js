// Number, count-interval and date formatting in the current language.
import { locale, t } from "./i18n.js";

/** Whether a value is a count interval {min, max} (every count /v1/search gives). */
function isInterval(value) {
  return value !== null && typeof value === "object" && "min" in value && "max" in value;
}

/** A number grouped per locale ("1,234"). */
function fmtNumber(n) {
  return new Intl.NumberFormat(locale()).format(n);
}

/** A count as shown: a number grouped per locale; an interval as the number when exact,
 * else as a range "12–40". */
export function fmtCount(value) {
  if (typeof value === "number") return fmtNumber(value);
  if (!isInterval(value)) return String(value ?? "");
  if (value.min === value.max) return fmtNumber(value.max);
  return t("count.range", { min: fmtNumber(value.min), max: fmtNumber(value.max) });
}

/** The tooltip of an inexact count (what the range means), or null for an exact one. */
export function countTitle(value) {
  if (!isBound(value)) return null;
  return t("count.range_title", { min: fmtNumber(value.min), max: fmtNumber(value.max) });
}

/** The number used to draw or sort a count: an interval draws as its upper end. */
export function countValue(value) {
  if (typeof value === "number") return value;
  return isInterval(value) ? value.max : 0;
}

/** The lower end of a count (what is certain). */
export function countMin(value) {
  if (typeof value === "number") return value;
  return isInterval(value) ? value.min : 0;
}

/** Whether a count is inexact: an interval whose ends differ. */
export function isBound(value) {
  return isInterval(value) && value.min !== value.max;
}

/** RFC 3339 UTC time shown as a readable UTC date and time. */
export function fmtTime(value) {
  if (!value) return t("node.never");
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const text = new Intl.DateTimeFormat(locale() === "zh-CN" ? "zh-CN" : "en-GB", {
    dateStyle: "medium", timeStyle: "short", timeZone: "UTC",
  }).format(date);
  return `${text} UTC`;
}

/** A mailto: href for a plausible address, else null (never another scheme). */
export function mailto(email) {
  const text = String(email ?? "").trim();
  return /^[^\s@<>()"]+@[^\s@<>()"]+$/.test(text) ? `mailto:${text}` : null;
}

/** An http(s) URL or null, so a record cannot inject javascript: links. */
export function webUrl(url) {
  try {
    const parsed = new URL(String(url ?? ""));
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}
