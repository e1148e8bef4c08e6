// A drawing pad for digits (white ink on black, as MNIST), and the MNIST normalisation of what
// was drawn: crop to the ink, scale the longer side to 20 px, centre the centre of mass in a
// 28 x 28 image. That PNG is what /predict receives.

import { h } from "./dom.js";

const SIDE = 28;
const BOX = 20;

/** Build the pad: {element, clear(), isEmpty(), toPng(): Promise<Blob|null>}. */
export function drawPad({ size = 280, pen = 20, label = "Drawing pad" } = {}) {
  const canvas = h("canvas", {
    width: size,
    height: size,
    class: "pad",
    "aria-label": `${label}: draw with the mouse, a finger or a pen`,
    role: "img",
  });
  const preview = h("canvas", {
    width: SIDE,
    height: SIDE,
    class: "preview",
    role: "img",
    "aria-label": "What the model receives: the drawing as a 28 × 28 image",
  });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let drawing = false;
  let last = null;
  let inked = false;

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, size, size);
    preview.getContext("2d").clearRect(0, 0, SIDE, SIDE);
    inked = false;
  }

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * size) / rect.width,
      ((event.clientY - rect.top) * size) / rect.height,
    ];
  }

  function dot([x, y]) {
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(x, y, pen / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    inked = true;
    last = point(event);
    dot(last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = pen;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  const stop = () => {
    drawing = false;
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  clear();

  async function toPng() {
    const image = mnistImage(ctx.getImageData(0, 0, size, size));
    if (!image) return null;
    const small = preview.getContext("2d");
    small.putImageData(image, 0, 0);
    return new Promise((resolve) => preview.toBlob(resolve, "image/png"));
  }

  const element = h("div", { class: "pad-box" }, canvas, h("div", { class: "preview-box" }, preview, h("span", { class: "muted small" }, "sent to the model (28 × 28)")));
  return { element, clear, toPng, isEmpty: () => !inked };
}

/** The MNIST-style 28 x 28 ImageData of a white-on-black drawing; null when nothing is drawn. */
export function mnistImage(data) {
  const { width, height } = data;
  const gray = new Float32Array(width * height);
  let [x0, y0, x1, y1] = [width, height, -1, -1];
  for (let i = 0; i < width * height; i += 1) {
    const v = data.data[4 * i];
    gray[i] = v;
    if (v > 10) {
      const x = i % width;
      const y = (i - x) / width;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1;
  const hgt = y1 - y0 + 1;
  const scale = BOX / Math.max(w, hgt);
  const tw = Math.max(1, Math.round(w * scale));
  const th = Math.max(1, Math.round(hgt * scale));
  // Area average: every source pixel adds to the target pixel it falls in.
  const sum = new Float32Array(tw * th);
  const count = new Float32Array(tw * th);
  for (let y = y0; y <= y1; y += 1) {
    const ty = Math.min(th - 1, Math.floor(((y - y0) * th) / hgt));
    for (let x = x0; x <= x1; x += 1) {
      const tx = Math.min(tw - 1, Math.floor(((x - x0) * tw) / w));
      sum[ty * tw + tx] += gray[y * width + x];
      count[ty * tw + tx] += 1;
    }
  }
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < tw * th; i += 1) {
    sum[i] = count[i] ? sum[i] / count[i] : 0;
    mass += sum[i];
    mx += sum[i] * (i % tw);
    my += sum[i] * Math.floor(i / tw);
  }
  const cx = mass ? mx / mass : (tw - 1) / 2;
  const cy = mass ? my / mass : (th - 1) / 2;
  const ox = Math.min(SIDE - tw, Math.max(0, Math.round((SIDE - 1) / 2 - cx)));
  const oy = Math.min(SIDE - th, Math.max(0, Math.round((SIDE - 1) / 2 - cy)));
  const out = new ImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i += 1) out.data[4 * i + 3] = 255;
  for (let y = 0; y < th; y += 1) {
    for (let x = 0; x < tw; x += 1) {
      const v = Math.round(sum[y * tw + x]);
      const o = 4 * ((y + oy) * SIDE + (x + ox));
      out.data[o] = v;
      out.data[o + 1] = v;
      out.data[o + 2] = v;
    }
  }
  return out;
}
