// A version's evidence, rendered from its report.json (written by shipyard convert, optimize
// and tune): parity, accuracy, size, speed, the int8 choice for the CPU, the hardware, the
// decision. Unknown sections are still there in the raw JSON at the end.

import { bytes, facts, h, num, table, verdict } from "./dom.js";

const pct = (x) => (x === null || x === undefined ? "–" : `${num(x * 100, 1)}%`);
const ms = (x) => (x === null || x === undefined ? "–" : `${num(x, 3)} ms`);

function parity(report) {
  const p = report.parity;
  if (!p) return null;
  const rows = (p.outputs || []).map((o) => [
    o.name,
    o.max_abs_error === undefined ? "–" : o.max_abs_error.toExponential(2),
    o.top1_agreement === undefined ? "–" : pct(o.top1_agreement),
    o.passed === undefined ? "–" : verdict(o.passed),
  ]);
  return section(
    "Parity with the source model",
    facts([
      ["verdict", verdict(p.passed)],
      ["compared on", `${p.batch ?? "?"} samples${p.inputs_from ? ` from ${p.inputs_from}` : ""}`],
      ["tolerances", p.tolerances ? `atol ${p.tolerances.atol}, rtol ${p.tolerances.rtol}` : undefined],
    ]),
    rows.length ? table(["output", "max abs error", "top-1 agreement", ""], rows) : null,
  );
}

function optimization(report) {
  const o = report.optimization;
  if (!o) return null;
  const int8 = o.int8;
  return section(
    "Optimization",
    facts([
      ["method", o.method ?? o.label ?? "–"],
      ["from version", o.source_version ?? "–"],
      ["weights", o.weights],
      ["activations", o.activations],
      ["per channel", o.per_channel === undefined ? undefined : String(o.per_channel)],
    ]),
    int8
      ? h(
          "div",
          { class: "int8" },
          h("h5", {}, "int8 weights chosen for this CPU"),
          facts([
            ["CPU kind", `${int8.description ?? int8.family ?? "?"} (${int8.family ?? "?"})`],
            ["reduce range", `${int8.reduce_range} (${int8.setting ?? "auto"})`],
            ["why", int8.reason],
          ]),
        )
      : null,
  );
}

function accuracy(report) {
  const a = report.accuracy;
  if (!a || typeof a !== "object") return null;
  const values = Object.entries(a)
    .filter(([k, v]) => typeof v === "number" && !["max_drop", "drop", "samples"].includes(k))
    .map(([k, v]) => [k.replaceAll("_", " "), num(v, 4)]);
  return section(
    "Accuracy guard",
    facts([
      ["verdict", a.passed === undefined ? "–" : verdict(a.passed)],
      ["metric", a.metric],
      ["accuracy delta (drop)", a.drop === undefined ? undefined : num(a.drop, 4)],
      ["allowed drop", a.max_drop === undefined ? undefined : num(a.max_drop, 4)],
      ["samples", a.samples],
      ["compared", a.compared],
      ...values,
    ]),
  );
}

function size(report) {
  const z = report.size;
  if (!z) return null;
  const ratio = z.before_bytes && z.after_bytes ? z.before_bytes / z.after_bytes : null;
  return section(
    "Size",
    facts([
      ["before", bytes(z.before_bytes)],
      ["after", bytes(z.after_bytes)],
      ["smaller by", ratio ? `${num(ratio, 2)}×` : "–"],
    ]),
  );
}

function speed(report) {
  const sp = report.speed;
  if (!sp || !sp.before || !sp.after) return null;
  const row = (label, m) => [
    label,
    ms(m.latency?.p50_ms),
    ms(m.latency?.p99_ms),
    `${num(m.throughput?.samples_per_s, 0)}/s (batch ${m.throughput?.batch ?? "?"})`,
  ];
  const guard = report.speed_guard;
  return section(
    "Latency and throughput",
    table(
      ["", "p50 (batch 1)", "p99 (batch 1)", "throughput"],
      [row("before", sp.before), row("after", sp.after)],
    ),
    guard
      ? facts([
          ["objective", guard.objective],
          ["verdict", guard.verdict],
          ["speed guard", guard.passed === undefined ? undefined : verdict(guard.passed)],
        ])
      : null,
  );
}

function tuning(report) {
  const t = report.tuning;
  if (!t) return null;
  const w = t.winner || {};
  const points = (w.points || []).map((p) => [
    p.concurrency,
    `${num(p.rps, 0)} req/s`,
    ms(p.p99_ms),
  ]);
  return section(
    "Tuning",
    facts([
      ["goal", t.goal?.objective],
      ["winner", w.label],
      ["why", w.why],
    ]),
    points.length ? table(["concurrency", "throughput", "p99"], points) : null,
  );
}

function hardware(report) {
  const hw = report.hardware;
  if (!hw) return null;
  return section(
    "Measured on",
    facts([
      ["CPU", `${hw.cpu} (${hw.architecture ?? "?"})`],
      ["cores", `${hw.physical_cores ?? "?"} physical / ${hw.logical_cores ?? "?"} logical`],
      ["features", (hw.features || []).join(", ") || "–"],
      ["int8 kernels", hw.int8_kernels],
      ["memory", hw.memory_total_bytes ? bytes(hw.memory_total_bytes) : undefined],
      ["GPUs", (hw.gpus || []).map((g) => g.name || g).join(", ") || "none"],
      ["ONNX Runtime", hw.onnxruntime],
      ["providers", (hw.providers || []).join(", ")],
    ]),
  );
}

function section(title, ...children) {
  return h("section", { class: "evidence-part" }, h("h4", {}, title), children);
}

/** The evidence of one version as a node (report: the parsed report.json). */
export function renderEvidence(report) {
  const made = report.step ?? (report.parity ? "convert" : "?");
  const summary = facts([
    ["made by", `shipyard ${made}${report.shipyard_version ? ` ${report.shipyard_version}` : ""}`],
    ["created", report.created],
    ["source", report.source ? `${report.source} (${report.framework ?? "?"})` : undefined],
    ["decision", report.decision],
  ]);
  const parts = [parity, optimization, accuracy, size, speed, tuning, hardware]
    .map((part) => part(report))
    .filter(Boolean);
  return h(
    "div",
    { class: "evidence" },
    summary,
    h("div", { class: "evidence-grid" }, parts),
    h(
      "details",
      { class: "raw" },
      h("summary", {}, "report.json"),
      h("pre", {}, JSON.stringify(report, null, 2)),
    ),
  );
}
