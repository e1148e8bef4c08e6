// The dashboard shell: picks the page from the URL (/ui/, /ui/live, ...), mounts it, and keeps
// the header (server version, the API key form) and the status line (toast) for every page.
// When the server needs an API key and this tab has none (or a refused one, which is dropped),
// no page is mounted: nothing is fetched, and the page points at the key form. With a key, each
// page fetches what it needs and shows the server's 401/403 message when the key's roles do
// not cover it.

import { forgetKey, getJSON, session, storedKey } from "./api.js";
import { h, replace } from "./dom.js";
import { mountKeyForm } from "./keyform.js";
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

function keyNeeded(access) {
  const form = "enter one in the “API key” form at the top of the page";
  return access.key_error
    ? `This tab's API key was refused (${access.key_error}): ${form}.`
    : `This server needs an API key: ${form}. Nothing is shown without one.`;
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
  let access = null;
  try {
    access = await session();
  } catch (error) {
    toast(`The server did not answer: ${error.message}`, "bad");
  }
  if (access?.key_error) forgetKey(); // a key the server does not know is of no use
  mountKeyForm(access);
  if (access?.keys && (!storedKey() || access.key_error)) {
    root.append(h("p", { class: "error needs-key", role: "alert" }, keyNeeded(access)));
    document.body.dataset.ready = name;
    return;
  }
  // The server's name and version (GET /v2) need the infer role: a metrics-only key skips it.
  if (access?.allows?.infer !== false) header();
  try {
    await page.mount(root, { toast });
  } catch (error) {
    root.append(h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`));
  }
  document.body.dataset.ready = name;
}

start();
