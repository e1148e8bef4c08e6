// What the Live page reads from the server, and the arithmetic on it: Prometheus text parsing,
// counter deltas and histogram quantiles (Prometheus' histogram_quantile interpolation).

/**
 * The metric names the Live page uses. The counters and the queue gauge exist today
 * (src/shipyard/metrics.py); the histograms light up p50/p99 and the batch-size distribution
 * as soon as /metrics exposes them (labels: model, version; a `stage` label on the stage
 * histogram). Other labels (transport, status...) are summed over.
 */
export const METRICS = Object.freeze({
  queueSize: "shipyard_inference_queue_size", // gauge: requests waiting, per model version
  requestDuration: "shipyard_request_duration_seconds", // histogram: end-to-end request time
  batchSize: "shipyard_batch_size", // histogram: rows per model execution
  stageDuration: "shipyard_stage_duration_seconds", // histogram with label stage
});

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(value) {
  return value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

function number(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

/** Parse Prometheus text exposition into [{name, labels, value}]. */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(LABEL)) labels[key] = unescape(value);
    samples.push({ name: match[1], labels, value: number(match[3]) });
  }
  return samples;
}

/** Sum of `name` (a gauge or counter, also as `name_total`) per model. */
export function sumByModel(samples, name) {
  const out = {};
  for (const s of samples) {
    if ((s.name === name || s.name === `${name}_total`) && s.labels.model !== undefined) {
      out[s.labels.model] = (out[s.labels.model] || 0) + s.value;
    }
  }
  return out;
}

/**
 * The cumulative buckets of histogram `name` per series: {seriesKey: {model, labels, buckets:
 * Map(le → count)}}. `where` filters on labels (e.g. {stage: "queue"}).
 */
export function histograms(samples, name) {
  const out = {};
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || s.labels.le === undefined) continue;
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const series = (out[key] ||= { labels: rest, buckets: new Map() });
    series.buckets.set(number(le), s.value);
  }
  return out;
}

/** Whether /metrics has a histogram called `name`. */
export const hasHistogram = (samples, name) => samples.some((s) => s.name === `${name}_bucket`);

/**
 * New cumulative buckets summed over series that match `keep(labels)`, as the increase from
 * `before` to `after` (per-series; a series that restarted counts from zero). Returns
 * [[le, count]] sorted by le, or null when no series matches.
 */
export function bucketIncrease(before, after, keep) {
  const total = new Map();
  let any = false;
  for (const [key, series] of Object.entries(after || {})) {
    if (!keep(series.labels)) continue;
    any = true;
    const old = before?.[key]?.buckets;
    for (const [le, count] of series.buckets) {
      const previous = old?.get(le) ?? 0;
      const grew = count >= previous ? count - previous : count;
      total.set(le, (total.get(le) || 0) + grew);
    }
  }
  if (!any) return null;
  return [...total.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile (0..1) of cumulative buckets [[le, count]], interpolated linearly inside the
 * bucket as Prometheus' histogram_quantile does; null when the buckets hold no observation.
 */
export function quantile(q, buckets) {
  if (!buckets || !buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower; // in the overflow bucket: its lower bound
      if (count === below) return le;
      return lower + ((le - lower) * (rank - below)) / (count - below);
    }
    lower = le;
    below = count;
  }
  return lower;
}

/** Cumulative buckets → per-bucket counts [{label, count}] (for the distribution bars). */
export function bucketCounts(buckets) {
  const out = [];
  let below = 0;
  let lower = 0;
  for (const [le, count] of buckets) {
    const label = le === Infinity ? `> ${lower}` : lower === 0 ? `≤ ${le}` : `${lower}–${le}`;
    out.push({ label, count: Math.max(0, count - below) });
    below = count;
    lower = le;
  }
  return out;
}

/**
 * Per-model counters from GET /v2/models/stats (Triton's statistics extension), summed over
 * versions, keyed model → version → counters (so deltas are taken per version).
 */
export function statsByVersion(stats) {
  const out = {};
  for (const m of stats.model_stats || []) {
    const s = m.inference_stats;
    const batches = {};
    for (const b of m.batch_stats || []) batches[b.batch_size] = b.compute_infer.count;
    (out[m.name] ||= {})[m.version] = {
      success: s.success.count,
      successNs: s.success.ns,
      fail: s.fail.count,
      queueNs: s.queue.ns,
      inferences: m.inference_count,
      executions: m.execution_count,
      batches,
    };
  }
  return out;
}

/** The increase of `field` from `before` to `after` summed over versions (restarts count from 0). */
export function increase(before, after, field) {
  let total = 0;
  for (const [version, now] of Object.entries(after || {})) {
    const then = before?.[version]?.[field] ?? 0;
    total += now[field] >= then ? now[field] - then : now[field];
  }
  return total;
}

/** Executions per batch size between two samples, summed over versions: {size: count}. */
export function batchIncrease(before, after) {
  const out = {};
  for (const [version, now] of Object.entries(after || {})) {
    for (const [size, count] of Object.entries(now.batches)) {
      const then = before?.[version]?.batches?.[size] ?? 0;
      const grew = count >= then ? count - then : count;
      if (grew > 0) out[size] = (out[size] || 0) + grew;
    }
  }
  return out;
}
