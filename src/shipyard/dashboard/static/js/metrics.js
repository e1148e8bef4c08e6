// What the Live page reads from the server, and the arithmetic on it: Prometheus text parsing,
// counter deltas and histogram quantiles (Prometheus' histogram_quantile interpolation).

/**
 * The metric names the Live page reads, all from GET /metrics (so a key with the `metrics`
 * role is enough): Triton-style cumulative counters and the queue gauge per model version, and
 * the histograms that give p50/p99 and the batch-size distribution (labels: model, version; a
 * `stage` label on the stage histogram). Other labels (transport, status...) are summed over.
 */
export const METRICS = Object.freeze({
  success: "shipyard_inference_request_success", // counter: successful requests
  failure: "shipyard_inference_request_failure", // counter: failed requests
  inferences: "shipyard_inference_count", // counter: inferences (batch items)
  executions: "shipyard_inference_exec_count", // counter: model executions (batches)
  successTime: "shipyard_inference_request_duration_us", // counter: µs of successful requests
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

/** The Live page's counter fields, and the METRICS name each is read from. */
const COUNTERS = Object.freeze({
  success: METRICS.success,
  fail: METRICS.failure,
  inferences: METRICS.inferences,
  executions: METRICS.executions,
  successUs: METRICS.successTime,
});

/**
 * The cumulative counters of /metrics per model and version (other labels summed over), keyed
 * model → version → {success, fail, inferences, executions, successUs}, so that deltas are
 * taken per version.
 */
export function countersByVersion(samples) {
  const byName = new Map();
  for (const [field, name] of Object.entries(COUNTERS)) {
    byName.set(name, field);
    byName.set(`${name}_total`, field);
  }
  const out = {};
  for (const s of samples) {
    const field = byName.get(s.name);
    if (field === undefined || s.labels.model === undefined) continue;
    const versions = (out[s.labels.model] ||= {});
    const counters = (versions[s.labels.version ?? ""] ||= Object.fromEntries(
      Object.keys(COUNTERS).map((f) => [f, 0]),
    ));
    counters[field] += s.value;
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
