// Number, count-bound and date formatting in the current language.
import { locale, t } from "./i18n.js";

/** A count as shown: numbers grouped per locale; bounds such as "<10" in words of the language. */
export function fmtCount(value) {
  if (typeof value === "number") return new Intl.NumberFormat(locale()).format(value);
  const bound = /^<\s*(\d+)$/.exec(String(value ?? ""));
  if (bound) return t("count.lt", { n: bound[1] });
  return String(value ?? "");
}

/** The number used to draw a count: a bound "<10" draws as its upper limit. */
export function countValue(value) {
  if (typeof value === "number") return value;
  const bound = /^<\s*(\d+)$/.exec(String(value ?? ""));
  return bound ? Number(bound[1]) : 0;
}

export function isBound(value) {
  return typeof value === "string" && value.trim().startsWith("<");
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
