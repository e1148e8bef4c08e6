// The Live page: per model throughput, latency, queue depth and batch sizes over the last
// minutes, polled every second from GET /metrics alone (Triton-style cumulative counters, the
// queue gauge, the latency and batch-size histograms), so a Prometheus scraper's key (role
// `metrics`) is enough to watch it.

import { getText } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { h, num, replace } from "./dom.js";
import {
  METRICS,
  bucketCounts,
  countersByVersion,
  bucketIncrease,
  hasHistogram,
  histograms,
  increase,
  parsePrometheus,
  quantile,
  sumByModel,
} from "./metrics.js";

export const POLL_MS = 1000;
const WINDOWS = [
  [60, "1 minute"],
  [300, "5 minutes"],
  [900, "15 minutes"],
];
/** The "now" figures in the table are taken over this many seconds. */
const RECENT_S = 5;

const ms = (seconds) => (seconds === null ? null : seconds * 1000);

async function sample() {
  const samples = parsePrometheus(await getText("/metrics"));
  const hist = (name) => (hasHistogram(samples, name) ? histograms(samples, name) : null);
  return {
    t: Date.now() / 1000,
    stats: countersByVersion(samples),
    queue: sumByModel(samples, METRICS.queueSize),
    request: hist(METRICS.requestDuration),
    batch: hist(METRICS.batchSize),
    stage: hist(METRICS.stageDuration),
  };
}

/** Figures of `model` between two samples: rates per second, latencies in ms. */
function between(a, b, model) {
  const dt = Math.max(1e-3, b.t - a.t);
  const before = a.stats[model];
  const after = b.stats[model];
  const done = increase(before, after, "success");
  const mine = (labels) => labels.model === model;
  const latency = bucketIncrease(a.request, b.request, mine);
  return {
    rate: done / dt,
    inferences: increase(before, after, "inferences") / dt,
    errors: increase(before, after, "fail") / dt,
    mean: done ? increase(before, after, "successUs") / done / 1e3 : null,
    p50: ms(quantile(0.5, latency)),
    p99: ms(quantile(0.99, latency)),
    queue: b.queue[model] ?? 0,
  };
}

function batchBars(first, last, model) {
  const buckets = bucketIncrease(first.batch, last.batch, (labels) => labels.model === model);
  return { source: METRICS.batchSize, bars: buckets ? bucketCounts(buckets) : [] };
}

function stageTable(first, last, model) {
  if (!last.stage) return null;
  const stages = new Set(
    Object.values(last.stage)
      .filter((x) => x.labels.model === model && x.labels.stage)
      .map((x) => x.labels.stage),
  );
  if (!stages.size) return null;
  const rows = [...stages].map((stage) => {
    const buckets = bucketIncrease(first.stage, last.stage, (l) => l.model === model && l.stage === stage);
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, stage),
      h("td", {}, num(ms(quantile(0.5, buckets)), 3)),
      h("td", {}, num(ms(quantile(0.99, buckets)), 3)),
    );
  });
  return h(
    "table",
    { class: "stages" },
    h("caption", {}, "Time per stage over the window (ms)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "stage"), h("th", { scope: "col" }, "p50"), h("th", { scope: "col" }, "p99"))),
    h("tbody", {}, rows),
  );
}

function panel(title, ...children) {
  return h("div", { class: "panel" }, h("h3", {}, title), children);
}

function cell(field, value, digits) {
  return h("td", { "data-field": field, "data-value": value ?? "" }, num(value, digits));
}

export async function mountLive(root) {
  let windowS = 300;
  let paused = false;
  let samples = [];
  const select = h(
    "select",
    { id: "live-window" },
    WINDOWS.map(([s, label]) => h("option", { value: s, selected: s === windowS }, label)),
  );
  select.addEventListener("change", () => {
    windowS = Number(select.value);
    draw();
  });
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
  });
  const status = h("span", { class: "muted", id: "live-status" });
  const note = h("p", { class: "note" });
  const summary = h("div", { class: "summary" });
  const cards = h("div", { class: "live-cards" });
  root.append(
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "live-window" }, "Window "),
      select,
      pause,
      status,
    ),
    note,
    summary,
    cards,
  );

  function draw() {
    if (samples.length < 2) {
      replace(summary, h("p", { class: "muted" }, "Collecting the first samples…"));
      return;
    }
    const last = samples[samples.length - 1];
    const t0 = last.t - windowS;
    const inWindow = samples.filter((x) => x.t >= t0 - 1);
    const first = inWindow[0];
    const recent = samples.find((x) => x.t >= last.t - RECENT_S - 0.5) || samples[samples.length - 2];
    const from = recent === last ? samples[samples.length - 2] : recent;
    const names = Object.keys(last.stats).sort();
    const histogramsShown = Boolean(last.request);
    replace(
      note,
      histogramsShown
        ? `p50 and p99 come from the ${METRICS.requestDuration} histogram in /metrics.`
        : `p50 and p99 need the ${METRICS.requestDuration} histogram, which this server's /metrics does not have; the mean latency comes from the ${METRICS.successTime} counter.`,
    );
    if (!names.length) {
      replace(summary, h("p", {}, "No model is loaded."));
      replace(cards);
      return;
    }
    const rows = names.map((name) => {
      const now = between(from, last, name);
      return h(
        "tr",
        { "data-model": name },
        h("th", { scope: "row" }, name),
        cell("rate", now.rate, 1),
        cell("inferences", now.inferences, 1),
        cell("mean", now.mean, 3),
        cell("p50", now.p50, 3),
        cell("p99", now.p99, 3),
        cell("queue", now.queue, 0),
        cell("errors", now.errors, 2),
      );
    });
    replace(
      summary,
      h(
        "table",
        { class: "live-table" },
        h("caption", {}, `Now (last ${RECENT_S} s)`),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["model", "req/s", "inferences/s", "mean ms", "p50 ms", "p99 ms", "queue", "errors/s"].map((x) =>
              h("th", { scope: "col" }, x),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    );
    // Models with traffic in the window first, then by name.
    const busy = (name) => increase(first.stats[name], last.stats[name], "success") > 0;
    const ordered = [...names.filter(busy), ...names.filter((name) => !busy(name))];
    replace(
      cards,
      ordered.map((name) => {
        const points = [];
        for (let i = 1; i < inWindow.length; i += 1) {
          points.push([inWindow[i].t, between(inWindow[i - 1], inWindow[i], name)]);
        }
        const series = (field) => points.map(([t, f]) => [t, f[field]]);
        const current = between(from, last, name);
        const latency = [
          { name: "mean", points: series("mean"), cls: "s0" },
          ...(histogramsShown
            ? [
                { name: "p50", points: series("p50"), cls: "s1" },
                { name: "p99", points: series("p99"), cls: "s2" },
              ]
            : []),
        ];
        const batches = batchBars(first, last, name);
        return h(
          "section",
          { class: "card live", "data-model": name, "aria-label": `Live figures of ${name}` },
          h("h2", {}, name),
          h(
            "div",
            { class: "charts" },
            panel("Throughput (requests/s)", lineChart({
            series: [{ name: "req/s", points: series("rate"), cls: "s0" }],
            t0,
            t1: last.t,
            label: `${name}: ${num(current.rate, 1)} requests per second now`,
            })),
            panel("Latency (ms)", lineChart({
            series: latency,
            t0,
            t1: last.t,
            label: `${name}: mean latency ${num(current.mean, 3)} ms now`,
            })),
            panel("Queue depth", lineChart({
            series: [{ name: "queued", points: series("queue"), cls: "s3" }],
            t0,
            t1: last.t,
            label: `${name}: ${current.queue} requests queued now`,
            })),
            panel(
              "Batch sizes (executions in the window)",
              barChart({
                bars: batches.bars,
                label: `${name}: executions per batch size over the window`,
                empty: "no execution in the window",
              }),
              h("p", { class: "muted small" }, `from ${batches.source}`),
            ),
          ),
          stageTable(first, last, name),
        );
      }),
    );
  }

  async function tick() {
    if (!paused && !document.hidden) {
      try {
        samples.push(await sample());
        const keep = samples[samples.length - 1].t - WINDOWS[WINDOWS.length - 1][0] - 5;
        samples = samples.filter((x) => x.t >= keep);
        replace(status, `updated ${new Date().toLocaleTimeString()}`);
        draw();
      } catch (error) {
        if (error.refused) {
          // The key will not change until the page reloads: stop polling, and say why.
          replace(status, "stopped");
          replace(summary, h("p", { class: "error", role: "alert" }, `Cannot read /metrics: ${error.message}`));
          replace(cards);
          return;
        }
        replace(status, `not updated: ${error.message}`);
      }
    }
    setTimeout(tick, POLL_MS);
  }
  await tick();
}
