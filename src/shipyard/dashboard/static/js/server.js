// The Server page: version and uptime, links to the metrics and the API, the settings in
// force (secrets never leave the server) and the hardware as `shipyard hw` reports it.

import { getJSON } from "./api.js";
import { bytes, duration, facts, h, table } from "./dom.js";

const DOCS = [
  ["docs/dashboard.md", "this dashboard and its routes"],
  ["docs/protocol.md", "the Open Inference Protocol routes and Shipyard's extensions"],
  ["docs/configuration.md", "every server setting"],
  ["docs/hardware.md", "what `shipyard hw` reports"],
];

function hardware(hw) {
  const cpu = hw.cpu || {};
  const ort = hw.onnxruntime || {};
  return h(
    "section",
    { class: "card", "aria-labelledby": "hw-title" },
    h("h2", { id: "hw-title" }, "Hardware"),
    facts([
      ["CPU", `${cpu.model} (${cpu.architecture})`],
      ["cores", `${cpu.physical_cores ?? "?"} physical / ${cpu.logical_cores} logical`],
      ["features", (cpu.features || []).join(", ") || "none of note"],
      ["int8 kernels", hw.int8_kernels ? `${hw.int8_kernels.description} (${hw.int8_kernels.saturates ? "16-bit sums: 7-bit weights" : "exact sums: full-range weights"})` : undefined],
      ["memory", hw.memory ? `${bytes(hw.memory.total_bytes)} total, ${bytes(hw.memory.available_bytes)} available` : undefined],
      ["GPUs", (hw.gpus || []).map((g) => `${g.name} (${bytes(g.memory_bytes)})`).join(", ") || hw.gpu_note || "none"],
      ["OpenVINO", hw.openvino ? (hw.openvino.devices?.length ? hw.openvino.devices.join(", ") : hw.openvino.note) : undefined],
      ["LiteRT", hw.litert?.note],
      ["probed", hw.probed_at],
    ]),
    h("h3", {}, `ONNX Runtime ${ort.version ?? "?"} execution providers`),
    table(
      ["provider", "device", "precisions", "notes"],
      (ort.providers || []).map((p) => [p.name, p.device, p.precisions.join(", ") || "–", p.notes]),
    ),
  );
}

export async function mountServer(root) {
  const [info, meta] = await Promise.all([getJSON("/ui/api/server"), getJSON("/v2")]);
  const loadedAt = performance.now();
  const uptime = h("span", { id: "uptime", "data-value": info.uptime_s }, duration(info.uptime_s));
  const tick = () => {
    const seconds = info.uptime_s + (performance.now() - loadedAt) / 1000;
    uptime.dataset.value = seconds.toFixed(1);
    uptime.textContent = duration(seconds);
  };
  setInterval(tick, 1000);
  const link = (href, text) => h("li", {}, h("a", { href }, href), ` — ${text}`);
  root.append(
    h(
      "section",
      { class: "card", "aria-labelledby": "srv-title" },
      h("h2", { id: "srv-title" }, "Server"),
      facts([
        ["version", `${meta.name} ${meta.version}`],
        ["started", info.started_at],
        ["uptime", uptime],
        ["Python", info.python],
        ["extensions", meta.extensions.join(", ")],
      ]),
      h("h3", {}, "Links"),
      h(
        "ul",
        { class: "links" },
        link("/metrics", "Prometheus metrics"),
        link("/v2", "server metadata"),
        link("/v2/models/stats", "statistics of every model"),
        link("/v2/health/ready", "readiness"),
      ),
      h("h3", {}, "Documentation (in the Shipyard source)"),
      h("ul", { class: "links" }, DOCS.map(([file, what]) => h("li", {}, h("code", {}, file), ` — ${what}`))),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "set-title" },
      h("h2", { id: "set-title" }, "Settings in force"),
      table(
        ["setting", "value"],
        Object.entries(info.settings).map(([k, v]) => [h("code", {}, k), Array.isArray(v) ? v.join(", ") || "(all)" : String(v)]),
        { class: "settings" },
      ),
    ),
    hardware(info.hardware),
  );
}
