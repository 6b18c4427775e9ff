// Entry point: the language switch, client-side routes (/, /nodes, /nodes/{origin}, /verification).
import { applyStatic, lang, onLangChange, setLang } from "./i18n.js";
import { renderNode, renderNodeList } from "./nodes.js";
import { relabelSearch, showSearch } from "./search.js";
import { renderVerify } from "./verify.js";

const main = document.getElementById("main");
let currentPath = null;

function route() {
  const path = location.pathname;
  const samePage = path === currentPath;
  currentPath = path;
  for (const link of document.querySelectorAll(".site-nav a")) {
    const here = link.getAttribute("href") === "/" ? path === "/" : path.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (path === "/verification") return renderVerify(main);
  if (path === "/nodes" || path === "/nodes/") return renderNodeList(main);
  if (path.startsWith("/nodes/")) {
    const origin = path.slice("/nodes/".length).split("/").map(decodeURIComponent).join("/");
    return renderNode(main, origin);
  }
  if (!samePage) window.scrollTo(0, 0);
  return showSearch(main);
}

function navigate(href) {
  history.pushState(null, "", href);
  route();
  main.focus({ preventScroll: true });
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});

window.addEventListener("popstate", route);

function syncLangButtons() {
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang()));
  }
}

for (const button of document.querySelectorAll("[data-lang]")) {
  button.addEventListener("click", () => setLang(button.dataset.lang));
}

onLangChange(() => {
  syncLangButtons();
  if (location.pathname === "/") relabelSearch(main); else route();
});

applyStatic();
syncLangButtons();
route();
