// The Playground: try a model through the same public routes a client uses. Image models take
// a drawing or an uploaded image (POST /v2/models/{m}/predict), text models take sentences
// (embedding models show the sentences' cosine similarity matrix), and every model has a
// request editor for POST /v2/models/{m}/infer, prefilled from its metadata.

import { getJSON, models as fetchModels, send, seg } from "./api.js";
import { h, num, replace } from "./dom.js";
import { drawPad } from "./drawpad.js";

const EXAMPLE_SENTENCES = [
  "A man is eating food.",
  "A man is eating a piece of bread.",
  "A man is riding a horse.",
  "The new movie is awesome.",
];
const MAX_PREFILL_ELEMENTS = 65536;

function answerLine(result) {
  return h(
    "p",
    { class: "muted small", "data-ms": result.ms.toFixed(2) },
    `HTTP ${result.status} in ${num(result.ms, 1)} ms from ${result.body?.model_name ?? "?"} v${result.body?.model_version ?? "?"}`,
  );
}

function labels(prediction) {
  const top = prediction.top_k || [{ label: prediction.label, score: prediction.score }];
  return h(
    "div",
    { class: "labels" },
    h("p", { class: "top-label", "data-label": prediction.label }, prediction.label),
    h(
      "ol",
      { class: "scores" },
      top.map((entry) =>
        h(
          "li",
          { "data-label": entry.label },
          h("span", { class: "label" }, entry.label),
          entry.score === undefined
            ? null
            : [
                h("meter", { min: 0, max: 1, value: entry.score, "aria-label": `score of ${entry.label}` }),
                h("span", { class: "score" }, num(entry.score, 4)),
              ],
        ),
      ),
    ),
  );
}

function raw(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** The cosine similarity matrix of `vectors` (rows), as a table with one cell per pair. */
export function similarity(sentences, vectors) {
  const norms = vectors.map((v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0)));
  const cos = (i, j) =>
    vectors[i].reduce((s, x, k) => s + x * vectors[j][k], 0) / (norms[i] * norms[j] || 1);
  const rows = sentences.map((text, i) =>
    h(
      "tr",
      {},
      h("th", { scope: "row", title: text }, `${i + 1}`),
      sentences.map((_, j) => {
        const value = cos(i, j);
        const level = Math.max(0, Math.min(10, Math.round(value * 10)));
        return h(
          "td",
          { class: `sim sim-${level}`, "data-row": i, "data-col": j, "data-value": value.toFixed(6) },
          num(value, 2),
        );
      }),
    ),
  );
  return h(
    "div",
    { class: "similarity-box" },
    h(
      "table",
      { class: "similarity" },
      h("caption", {}, "Cosine similarity of the sentence embeddings"),
      h("thead", {}, h("tr", {}, h("td", {}), sentences.map((_, j) => h("th", { scope: "col" }, `${j + 1}`)))),
      h("tbody", {}, rows),
    ),
    h("ol", { class: "sentences" }, sentences.map((text) => h("li", {}, text))),
  );
}

function imagePanel(model, toast) {
  const out = h("div", { class: "result", role: "status", "aria-live": "polite" });
  const pad = drawPad({ label: `Drawing pad for ${model.name}` });
  const predict = async (body, type) => {
    replace(out, h("p", { class: "muted" }, "Asking the model…"));
    try {
      const result = await send("POST", `/v2/models/${seg(model.name)}/predict`, {
        body,
        headers: { "Content-Type": type },
      });
      const first = result.body.predictions[0];
      replace(out, first.label !== undefined ? labels(first) : raw(first), answerLine(result));
    } catch (error) {
      replace(out, h("p", { class: "error" }, error.message));
      toast(error.message, "bad");
    }
  };
  const classify = h("button", { type: "button", class: "primary", id: "pg-classify" }, "Classify the drawing");
  classify.addEventListener("click", async () => {
    const png = await pad.toPng();
    if (!png) {
      replace(out, h("p", { class: "error" }, "Draw a digit first."));
      return;
    }
    await predict(png, "image/png");
  });
  const clear = h("button", { type: "button", onclick: () => { pad.clear(); replace(out); } }, "Clear");
  const upload = h("input", { type: "file", accept: "image/*", id: "pg-upload" });
  upload.addEventListener("change", async () => {
    const file = upload.files[0];
    if (file) await predict(file, file.type || "application/octet-stream");
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "pg-image-title" },
    h("h2", { id: "pg-image-title" }, "Draw a digit or upload an image"),
    h("p", { class: "muted" }, `POST /v2/models/${model.name}/predict with the PNG of the drawing (white on black, centred as MNIST digits are) or the uploaded file.`),
    h("div", { class: "image-play" }, pad.element, h("div", {}, h("div", { class: "toolbar" }, classify, clear), h("p", {}, h("label", { for: "pg-upload" }, "Upload an image: "), upload), out)),
  );
}

function textPanel(model, toast) {
  const out = h("div", { class: "result", role: "status", "aria-live": "polite" });
  const input = h("textarea", { id: "pg-text", rows: 5, spellcheck: "false" });
  input.value = EXAMPLE_SENTENCES.join("\n");
  const embedding = model.predict.output === "embedding";
  const go = h("button", { type: "button", class: "primary", id: "pg-send-text" }, embedding ? "Compare the sentences" : "Predict");
  go.addEventListener("click", async () => {
    const sentences = input.value.split("\n").map((x) => x.trim()).filter(Boolean);
    if (!sentences.length) {
      replace(out, h("p", { class: "error" }, "Type at least one sentence."));
      return;
    }
    replace(out, h("p", { class: "muted" }, "Asking the model…"));
    try {
      const result = await send("POST", `/v2/models/${seg(model.name)}/predict`, {
        body: sentences.join("\n"),
        headers: { "Content-Type": "text/plain; charset=utf-8" },
      });
      const predictions = result.body.predictions;
      let shown;
      if (embedding) shown = similarity(sentences, predictions.map((p) => p.embedding));
      else if (predictions[0].label !== undefined) {
        shown = h("ol", { class: "text-labels" }, predictions.map((p, i) => h("li", {}, h("q", {}, sentences[i]), labels(p))));
      } else shown = raw(predictions);
      replace(out, shown, answerLine(result));
    } catch (error) {
      replace(out, h("p", { class: "error" }, error.message));
      toast(error.message, "bad");
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "pg-text-title" },
    h("h2", { id: "pg-text-title" }, embedding ? "Sentences and their similarity" : "Text"),
    h("p", { class: "muted" }, `One sentence per line, sent as text/plain to POST /v2/models/${model.name}/predict.`),
    h("label", { for: "pg-text" }, "Sentences"),
    input,
    h("div", { class: "toolbar" }, go),
    out,
  );
}

/** A V2 inference request for `metadata`, every -1 dimension set to 1, zeros as data. */
export function prefill(metadata, kind) {
  const inputs = metadata.inputs.map((spec) => {
    const shape = spec.shape.map((d) => (d < 0 ? 1 : d));
    const count = shape.reduce((a, b) => a * b, 1);
    let value = 0;
    if (spec.datatype === "BOOL") value = false;
    if (spec.datatype === "BYTES") value = kind === "text" ? EXAMPLE_SENTENCES[0] : "";
    const data = new Array(Math.min(count, MAX_PREFILL_ELEMENTS)).fill(value);
    return { name: spec.name, shape, datatype: spec.datatype, data };
  });
  return { inputs };
}

/** A request as JSON with one line per input tensor (long data arrays stay on one line). */
function compact(request) {
  const lines = request.inputs.map((x) => `    ${JSON.stringify(x)}`);
  return `{\n  "inputs": [\n${lines.join(",\n")}\n  ]\n}`;
}

async function editorPanel(model, toast) {
  const metadata = await getJSON(`/v2/models/${seg(model.name)}`);
  const path = `/v2/models/${seg(model.name)}/infer`;
  const editor = h("textarea", { id: "pg-request", rows: 10, spellcheck: "false", class: "code" });
  editor.value = compact(prefill(metadata, model.predict.input));
  const out = h("div", { class: "result", role: "status", "aria-live": "polite", id: "pg-response" });
  const sendButton = h("button", { type: "button", class: "primary", id: "pg-send" }, "Send");
  sendButton.addEventListener("click", async () => {
    let body;
    try {
      body = JSON.stringify(JSON.parse(editor.value));
    } catch (error) {
      replace(out, h("p", { class: "error" }, `The request is not valid JSON: ${error.message}`));
      return;
    }
    replace(out, h("p", { class: "muted" }, "Sending…"));
    try {
      const result = await send("POST", path, { body, headers: { "Content-Type": "application/json" } });
      replace(out, answerLine(result), raw(result.body));
    } catch (error) {
      replace(out, h("p", { class: "error" }, error.message));
      toast(error.message, "bad");
    }
  });
  const notes = [];
  if (model.predict.input === "image") notes.push("This model's input takes encoded image bytes, which JSON cannot carry: use the drawing pad above, or the binary extension from a client.");
  if (metadata.inputs.some((x) => x.datatype === "FP16" || x.datatype === "BF16")) notes.push("FP16 and BF16 tensors travel only in binary form, not in JSON.");
  return h(
    "section",
    { class: "card", "aria-labelledby": "pg-editor-title" },
    h("h2", { id: "pg-editor-title" }, "Request editor"),
    h("p", { class: "muted" }, `POST ${path}, prefilled from GET /v2/models/${model.name} (every -1 dimension set to 1).`),
    notes.map((n) => h("p", { class: "note" }, n)),
    h("label", { for: "pg-request" }, "Request body (JSON)"),
    editor,
    h("div", { class: "toolbar" }, sendButton),
    out,
  );
}

export async function mountPlayground(root, { toast }) {
  const ready = (await fetchModels()).filter((m) => m.state === "READY" && m.default_version);
  if (!ready.length) {
    root.append(h("p", {}, "No model is ready. Load one from the Models page."));
    return;
  }
  const wanted = new URLSearchParams(location.search).get("model");
  const first =
    ready.find((m) => m.name === wanted) || ready.find((m) => m.predict.input === "image" || m.predict.input === "text") || ready[0];
  const select = h(
    "select",
    { id: "pg-model" },
    ready.map((m) => h("option", { value: m.name, selected: m === first }, m.name)),
  );
  const body = h("div", { class: "playground" });
  async function show(name) {
    const model = ready.find((m) => m.name === name);
    const url = new URL(location.href);
    url.searchParams.set("model", name);
    history.replaceState(null, "", url);
    const panels = [];
    if (model.predict.input === "image") panels.push(imagePanel(model, toast));
    if (model.predict.input === "text") panels.push(textPanel(model, toast));
    panels.push(await editorPanel(model, toast));
    replace(body, panels);
  }
  select.addEventListener("change", () => show(select.value));
  root.append(h("div", { class: "toolbar" }, h("label", { for: "pg-model" }, "Model "), select), body);
  await show(first.name);
}
