// Small DOM helpers: elements are built with h(), never from HTML strings, so no model name,
// label or error message can inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") element.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Create an HTML element: h("a", {href: "x", class: "y"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Create an SVG element (same arguments as h). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  return build(element, {}, children);
}

/** A number with `digits` significant decimals, thousands separated; "–" for none. */
export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  const places = abs >= 100 ? 0 : abs >= 10 ? Math.min(digits, 1) : digits;
  return value.toLocaleString("en-US", {
    minimumFractionDigits: places,
    maximumFractionDigits: places,
  });
}

/** Bytes as KiB / MiB / GiB. */
export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${num(size, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Seconds as "3 d 4 h", "5 h 2 min", "4 min 3 s" or "12 s". */
export function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [
    [Math.floor(s / 86400), "d"],
    [Math.floor((s % 86400) / 3600), "h"],
    [Math.floor((s % 3600) / 60), "min"],
    [s % 60, "s"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  if (first < 0) return "0 s";
  return parts
    .slice(first, first + 2)
    .map(([n, u]) => `${n} ${u}`)
    .join(" ");
}

/** A <table> from column headers and rows of cells, in a box that scrolls sideways if needed. */
export function table(headers, rows, attrs = {}) {
  return h("div", { class: "table-wrap" }, h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h(
      "tbody",
      {},
      rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell)))),
    ),
  ));
}

/** A definition list from [term, value] pairs (pairs with an undefined value are left out). */
export function facts(pairs, attrs = {}) {
  return h(
    "dl",
    { class: "facts", ...attrs },
    pairs
      .filter(([, value]) => value !== undefined)
      .map(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "–")]),
  );
}

/** "ok" / "bad" pill for a boolean verdict. */
export function verdict(passed, yes = "passed", no = "failed") {
  return h("span", { class: passed ? "pill ok" : "pill bad" }, passed ? yes : no);
}
