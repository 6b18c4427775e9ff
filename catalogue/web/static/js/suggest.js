// A labelled text field that suggests codes as you type (keyboard: Down/Up to move, Enter to pick, Esc to close).
import { h, fill } from "./dom.js";
import { t } from "./i18n.js";

/**
 * Build the field. `search(query)` resolves to [{value, label}]; `onPick(value)` applies one.
 * The input keeps a stable id so focus can be restored after the form is re-rendered.
 */
export function suggestField({ id, label, hint, search, onPick }) {
  const listId = `${id}-list`;
  const hintId = `${id}-hint`;
  const statusId = `${id}-status`;
  const input = h("input", {
    id, type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": `${hintId} ${statusId}`,
    "aria-controls": listId, class: "text",
  });
  const list = h("ul", { id: listId, class: "suggestions", hidden: true });
  const status = h("p", { id: statusId, class: "sr-only", "aria-live": "polite" });
  let timer = null;
  let options = [];
  let seq = 0;

  function close() {
    list.hidden = true;
    fill(list);
  }

  function pick(value) {
    input.value = "";
    close();
    onPick(value);
  }

  function buttons() { return [...list.querySelectorAll("button")]; }

  async function update() {
    const query = input.value.trim();
    const mine = ++seq;
    if (!query) { close(); status.textContent = ""; return; }
    status.textContent = t("f.loading");
    const found = await search(query);
    if (mine !== seq) return;  // a newer keystroke won
    options = found;
    fill(list, found.map((opt) => h("li", {},
      h("button", { type: "button", class: "suggestion", "data-value": opt.value,
        onclick: () => pick(opt.value) }, opt.label))));
    if (found.length === 0) list.append(h("li", { class: "muted" }, t("f.suggest.none")));
    list.hidden = false;
    status.textContent = found.length ? t("f.suggest.count", { n: found.length }) : t("f.suggest.none");
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(update, 120);
  });
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Enter") {
      event.preventDefault();  // do not submit the whole form
      clearTimeout(timer);
      await update();
      if (options.length > 0) pick(options[0].value);
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      buttons()[0]?.focus();
    } else if (event.key === "Escape") {
      close();
    }
  });
  list.addEventListener("keydown", (event) => {
    const all = buttons();
    const at = all.indexOf(document.activeElement);
    if (event.key === "ArrowDown") { event.preventDefault(); all[Math.min(at + 1, all.length - 1)]?.focus(); }
    if (event.key === "ArrowUp") {
      event.preventDefault();
      if (at <= 0) input.focus(); else all[at - 1].focus();
    }
    if (event.key === "Escape") { close(); input.focus(); }
  });

  return h("div", { class: "suggest" },
    h("label", { for: id }, label),
    h("p", { id: hintId, class: "hint" }, hint),
    input, status, list);
}
