// The plain-language page about how verification works.
import { fill, h } from "./dom.js";
import { t } from "./i18n.js";

export function renderVerify(main) {
  const section = (n) => h("section", { class: "panel" },
    h("h2", {}, t(`verify.s${n}.title`)), h("p", {}, t(`verify.s${n}.body`)));
  fill(main, h("article", { class: "page prose" },
    h("h1", {}, t("verify.title")), h("p", { class: "lead" }, t("verify.lead")),
    [1, 2, 3, 4, 5].map(section)));
}
