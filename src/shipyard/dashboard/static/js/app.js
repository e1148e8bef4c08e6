// The dashboard shell: picks the page from the URL (/ui/, /ui/live, ...), mounts it, and keeps
// the header (server version) and the status line (toast) for every page.

import { getJSON } from "./api.js";
import { h, replace } from "./dom.js";
import { mountLive } from "./live.js";
import { mountModels } from "./models.js";
import { mountPlayground } from "./playground.js";
import { mountServer } from "./server.js";

const PAGES = {
  models: { title: "Models", mount: mountModels },
  live: { title: "Live", mount: mountLive },
  playground: { title: "Playground", mount: mountPlayground },
  server: { title: "Server", mount: mountServer },
};

let toastTimer = null;

/** Show a short message in the status line (announced by screen readers). */
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.className = `show ${kind}`;
  box.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.className = "";
  }, 6000);
}

function pageName() {
  const last = location.pathname.replace(/\/+$/, "").split("/").pop();
  return Object.hasOwn(PAGES, last) ? last : "models";
}

async function header() {
  try {
    const meta = await getJSON("/v2");
    replace(document.getElementById("server-badge"), `${meta.name} ${meta.version}`);
  } catch (error) {
    toast(`The server did not answer: ${error.message}`, "bad");
  }
}

async function start() {
  const name = pageName();
  const page = PAGES[name];
  document.title = `${page.title} · Shipyard`;
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
  }
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  const main = document.getElementById("main");
  const root = h("div", { class: `page page-${name}` });
  replace(main, h("h1", {}, page.title), root);
  header();
  try {
    await page.mount(root, { toast });
  } catch (error) {
    root.append(h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`));
  }
  document.body.dataset.ready = name;
}

start();
