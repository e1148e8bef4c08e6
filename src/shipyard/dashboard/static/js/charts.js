// Plain SVG charts (no library): a time-series line chart and a bar chart. Colours come from
// the stylesheet (classes s0..s3), so the charts follow the page's theme.

import { h, num, s } from "./dom.js";

const W = 420;

/** The smallest 1, 2 or 5 × 10^k at or above `value` (the top of the y axis). */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** An axis value: whole numbers as such, others with one or two decimals. */
export function tick(value) {
  return num(value, Number.isInteger(value) ? 0 : value < 1 ? 2 : 1);
}

/**
 * A line chart of `series` ([{name, points: [[t, value|null]], cls}]) over t0..t1 (seconds).
 * `label` is what a screen reader hears (the chart is role="img"); `format` shows values.
 */
export function lineChart({ series, t0, t1, label, format = tick, height = 150 }) {
  const H = height;
  const [left, right, top, bottom] = [52, 10, 10, 20];
  const values = series.flatMap((x) => x.points.map((p) => p[1])).filter(Number.isFinite);
  const max = niceMax(Math.max(0, ...values));
  const span = Math.max(1e-9, t1 - t0);
  const x = (t) => left + ((t - t0) / span) * (W - left - right);
  const y = (v) => top + (1 - v / max) * (H - top - bottom);
  const grid = [0, max / 2, max].map((v) => [
    s("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }),
    s("text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, format(v)),
  ]);
  const minutes = Math.round(span / 60);
  const axis = [
    s("text", { x: left, y: H - 4, class: "tick" }, minutes >= 1 ? `−${minutes} min` : `−${Math.round(span)} s`),
    s("text", { x: W - right, y: H - 4, class: "tick", "text-anchor": "end" }, "now"),
  ];
  const lines = series.map((one, index) => {
    const segments = [];
    let current = [];
    for (const [t, v] of one.points) {
      if (v === null || !Number.isFinite(v) || t < t0) {
        if (current.length) segments.push(current);
        current = [];
      } else current.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    }
    if (current.length) segments.push(current);
    return segments.map((points) =>
      points.length === 1
        ? s("circle", { cx: points[0].split(",")[0], cy: points[0].split(",")[1], r: 2, class: `dot ${one.cls || `s${index}`}` })
        : s("polyline", { points: points.join(" "), class: `line ${one.cls || `s${index}`}` }),
    );
  });
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img", "aria-label": label },
    grid,
    axis,
    lines,
  );
  const legend = h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    series.map((one, index) => h("li", { class: one.cls || `s${index}` }, one.name)),
  );
  return h("figure", { class: "chart-box" }, svg, series.length > 1 ? legend : null);
}

/** A bar chart of [{label, count}] (e.g. executions per batch size); role="img" with `label`. */
export function barChart({ bars, label, height = 150, empty = "no data yet" }) {
  const H = height;
  const [left, right, top, bottom] = [40, 8, 10, 22];
  const total = bars.reduce((sum, b) => sum + b.count, 0);
  if (!total) return h("p", { class: "muted chart-empty" }, empty);
  const max = niceMax(Math.max(...bars.map((b) => b.count)));
  const width = (W - left - right) / bars.length;
  const y = (v) => top + (1 - v / max) * (H - top - bottom);
  const shown = bars.length > 16 ? Math.ceil(bars.length / 16) : 1;
  return h(
    "figure",
    { class: "chart-box" },
    s(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img", "aria-label": label },
      [0, max].map((v) => [
        s("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }),
        s("text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, tick(v)),
      ]),
      bars.map((b, i) => [
        s(
          "rect",
          {
            x: left + i * width + width * 0.12,
            y: y(b.count),
            width: width * 0.76,
            height: Math.max(0, H - bottom - y(b.count)),
            class: "bar",
          },
          s("title", {}, `${b.label}: ${b.count} (${num((100 * b.count) / total, 1)}%)`),
        ),
        i % shown === 0
          ? s("text", { x: left + (i + 0.5) * width, y: H - 6, class: "tick", "text-anchor": "middle" }, b.label)
          : null,
      ]),
    ),
  );
}
