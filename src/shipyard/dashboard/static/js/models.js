// The Models page: every model in the repository with its state, versions, signature,
// processing and batching, each version's evidence (report.json), and load / reload / unload
// through the public repository routes, offered as GET /ui/api/session says (offersControl).

import { getJSON, getText, models as fetchModels, send, seg, session, storedKey } from "./api.js";
import { facts, h, replace, table } from "./dom.js";
import { renderEvidence } from "./evidence.js";

const shape = (dims) => `[${dims.join(", ")}]`;

function signature(title, specs) {
  if (!specs || !specs.length) return null;
  return h(
    "div",
    { class: "signature" },
    h("h4", {}, title),
    table(
      ["name", "datatype", "shape"],
      specs.map((x) => [h("code", {}, x.name), x.datatype, shape(x.shape)]),
    ),
  );
}

function stepText(step) {
  const options = Object.entries(step)
    .filter(([k]) => k !== "op")
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("×") : v}`);
  return options.length ? `${step.op}(${options.join(", ")})` : step.op;
}

function processing(p) {
  if (!p) return h("p", { class: "muted" }, "No processing: clients send the model's tensors.");
  const chain = (from, steps, to) =>
    h(
      "li",
      {},
      h("code", {}, from),
      steps.map((st) => [" → ", h("span", { class: "step" }, stepText(st))]),
      " → ",
      h("code", {}, to),
    );
  return h(
    "ul",
    { class: "chains" },
    p.preprocess.map((e) => chain(e.input, e.steps, e.target ?? "input_ids, attention_mask…")),
    p.postprocess.map((e) =>
      chain(e.output, e.steps, e.labels ? `labels (${e.labels})` : "client output"),
    ),
  );
}

function batching(b) {
  if (!b) return "–";
  if (!b.max_batch_size) return `no batching, ${b.instance_count} instance(s)`;
  const dyn = b.dynamic_batching;
  const delay = dyn ? `, queue delay ${dyn.max_queue_delay_us} µs, queue ≤ ${dyn.max_queue_size}` : "";
  return `max batch ${b.max_batch_size}${dyn ? ", dynamic" : ", no dynamic batching"}${delay}, ${b.instance_count} instance(s)`;
}

function versionLabel(v) {
  const tags = [v.loaded ? "loaded" : "on disk", v.default ? "default" : null];
  if (!v.report) tags.push("no report.json");
  return `version ${v.version} · ${tags.filter(Boolean).join(" · ")}`;
}

function versions(model) {
  return model.versions.map((v) => {
    const body = h("div", { class: "version-body" });
    const details = h(
      "details",
      { class: "version", "data-version": v.version },
      h("summary", {}, versionLabel(v)),
      v.warnings.map((w) => h("p", { class: "warning" }, `Warning: ${w}`)),
      body,
    );
    let fetched = false;
    const fetchReport = async () => {
      if (fetched || !details.open) return;
      fetched = true;
      if (!v.report) {
        replace(body, h("p", { class: "muted" }, "This version has no report.json."));
        return;
      }
      replace(body, h("p", { class: "muted" }, "Loading the evidence…"));
      try {
        const path = `/ui/api/models/${seg(model.name)}/versions/${seg(v.version)}/report`;
        replace(body, renderEvidence(await getJSON(path)));
      } catch (error) {
        replace(body, h("p", { class: "error" }, error.message));
      }
    };
    details.addEventListener("toggle", fetchReport);
    if (v.default || (model.default_version === null && v === model.versions[0])) {
      details.open = true;
      fetchReport();
    }
    return details;
  });
}

/**
 * A link to the model's tuning report. A plain link cannot carry the API key, so with a key
 * the report is fetched with it and saved as a file (opening it here, in the dashboard's own
 * origin, would give up the sandbox the server sends it with).
 */
function tuneReport(name) {
  const path = `/ui/api/models/${seg(name)}/tune-report`;
  if (!storedKey()) return h("a", { href: path, target: "_blank", rel: "noopener" }, "tune-report.html");
  const outcome = h("span", { class: "outcome", role: "status" });
  const save = async () => {
    try {
      const blob = new Blob([await getText(path)], { type: "text/html" });
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: `${name}-tune-report.html`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      replace(outcome, "");
    } catch (error) {
      replace(outcome, error.message);
    }
  };
  return [h("button", { type: "button", class: "tune-report", onclick: save }, "download tune-report.html"), " ", outcome];
}

/**
 * Whether the page shows Load, Unload and Reload. Without API keys: only to the clients the
 * server allows (loopback). With keys: to every valid key, since the server names the role a
 * refused one lacks (403), which says more than a missing button.
 */
const offersControl = (access) => access.can_control || Boolean(access.keys && access.key);

function card(model, access, outcome, act) {
  const loaded = model.versions.some((v) => v.loaded);
  const stateClass = `state state-${model.state.toLowerCase()}`;
  const controls = offersControl(access)
    ? h(
        "div",
        { class: "controls", role: "group", "aria-label": `Control ${model.name}` },
        loaded
          ? [
              h("button", { type: "button", onclick: () => act("load", model.name, "reload") }, "Reload"),
              h("button", { type: "button", class: "danger", onclick: () => act("unload", model.name, "unload") }, "Unload"),
            ]
          : h("button", { type: "button", onclick: () => act("load", model.name, "load") }, "Load"),
        h("span", { class: "outcome", role: "status" }, outcome || ""),
      )
    : null;
  const headingId = `model-${model.name}`;
  return h(
    "section",
    { class: "card model", "data-model": model.name, "aria-labelledby": headingId },
    h(
      "div",
      { class: "card-head" },
      h("h2", { id: headingId, tabindex: "-1" }, model.name),
      h("span", { class: stateClass, "data-state": model.state }, model.state),
      model.default_version ? h("span", { class: "muted" }, `serves v${model.default_version} by default`) : null,
    ),
    model.reason && model.state !== "READY" ? h("p", { class: "reason" }, model.reason) : null,
    controls,
    loaded
      ? facts([
          ["platform", `${model.platform} (backend ${model.backend})`],
          ["batching", batching(model.batching)],
          [
            "try it",
            h("a", { href: `/ui/playground?model=${seg(model.name)}` }, "open in the playground"),
          ],
          [
            "tuning report",
            model.tune_report ? tuneReport(model.name) : undefined,
          ],
        ])
      : null,
    loaded
      ? h(
          "div",
          { class: "columns" },
          signature("Inputs", model.inputs),
          signature("Outputs", model.outputs),
          model.processing ? signature("Model inputs", model.model_inputs) : null,
          model.processing ? signature("Model outputs", model.model_outputs) : null,
        )
      : null,
    loaded ? h("div", { class: "processing" }, h("h3", {}, "Processing"), processing(model.processing)) : null,
    h("h3", {}, "Versions and evidence"),
    model.versions.length ? versions(model) : h("p", { class: "muted" }, "No version on disk."),
  );
}

export async function mountModels(root, { toast }) {
  const outcomes = new Map();
  const note = h("p", { class: "muted access" });
  const list = h("div", { class: "models" });
  let busy = false;

  async function act(route, name, label) {
    if (busy) return;
    busy = true;
    for (const b of list.querySelectorAll(`[data-model="${CSS.escape(name)}"] button`)) b.disabled = true;
    outcomes.set(name, `${label}: working…`);
    try {
      const r = await send("POST", `/v2/repository/models/${seg(name)}/${route}`, {
        body: "{}",
        headers: { "Content-Type": "application/json" },
      });
      outcomes.set(name, `${label}: done in ${Math.round(r.ms)} ms`);
      toast(`${name}: ${label} done`, "ok");
    } catch (error) {
      outcomes.set(name, `${label} failed: ${error.message}`);
      toast(`${name}: ${label} failed`, "bad");
    }
    busy = false;
    await refresh();
    list.querySelector(`[data-model="${CSS.escape(name)}"] h2`)?.focus();
  }

  /** render(), showing a failure (a refused key, a server gone) on the page. */
  async function refresh() {
    try {
      await render();
    } catch (error) {
      replace(note, h("span", { class: "error", role: "alert" }, `Could not refresh: ${error.message}`));
    }
  }

  async function render() {
    const [access, rows] = await Promise.all([session(), fetchModels()]);
    replace(
      note,
      access.can_control
        ? "You may load, unload and reload models from here (this client is allowed: " + access.reason + ")."
        : `Read-only: ${access.reason}.`,
    );
    replace(
      list,
      rows.length
        ? rows.map((m) => card(m, access, outcomes.get(m.name), act))
        : h("p", {}, "The repository has no models."),
    );
  }

  const again = h("button", { type: "button", onclick: refresh }, "Refresh");
  root.append(h("div", { class: "toolbar" }, again, note), list);
  await render();
}
