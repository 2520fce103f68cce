// Model: the card in use (GET /model): its evaluation as a short table, its figures (ROC/DET,
// score histograms: GET /model/figures/{name}) and its calibration, plotted with the thresholds
// /verify and /identify decide with now.
import { blobURL, getJSON } from "../api.js";
import { clear, h, num, rate } from "../dom.js";
import { problemView } from "../problem.js";
import { facts } from "./common.js";
import { calibrationPlot, farText } from "./plot.js";

const ACRONYMS = new Set(["roc", "auc", "eer", "tar", "far", "frr", "fpir", "lfw", "onnx", "mtcnn", "sem", "std"]);

function label(key) {
  const words = key.split("_").map((w) => (ACRONYMS.has(w.toLowerCase()) ? w.toUpperCase() : w));
  return words.join(" ").replace(/^./, (c) => c.toUpperCase());
}

function value(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x !== "object" || x === null)) return v.map(value).join(", ");
    return tableOf(v);
  }
  return tree(v);
}

function tableOf(rows) {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r || {})))];
  return h("div", { class: "scroll" }, h("table", { class: "data" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, label(c))))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) => h("td", {}, value(r?.[c]))))))));
}

/** Any JSON object as nested definition lists. */
function tree(obj) {
  return h("dl", { class: "facts" }, Object.entries(obj).map(([k, v]) => [h("dt", {}, label(k)), h("dd", {}, value(v))]));
}

export function modelView() {
  const body = h("div", { class: "view-body" });
  let urls = [];

  function release() {
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
  }

  async function load() {
    let card;
    try {
      card = await getJSON("/model");
    } catch (err) {
      clear(body, problemView(err));
      return;
    }
    release();
    clear(body, summary(card), evaluation(card.evaluation || {}), figures(card.figures || [], urls),
      calibration(card.calibration, card.operating_points));
  }
  return { title: "Model", el: body, show: load, hide: release };
}

function summary(card) {
  return h("section", { class: "card" },
    h("h2", {}, `${card.name} `, h("span", { class: "chip" }, card.version)),
    facts([
      ["Licence", card.license],
      ["Training data", (card.training_data || []).length
        ? h("ul", {}, card.training_data.map((d) => h("li", {}, h("strong", {}, d.name || "?"), d.terms ? ` — ${d.terms}` : "")))
        : "–"],
      ["Input", card.input ? `${card.input.size[0]}×${card.input.size[1]} ${card.input.color || ""} ${card.input.dtype || ""}` : "–"],
      ["Embedding", `${card.embedding_dim} dimensions`],
      ["Runs on", (card.execution_providers || []).join(", ")],
      ["Provenance", card.provenance],
      ["File", h("code", { title: card.sha256 }, `${card.file} · sha256 ${String(card.sha256).slice(0, 16)}…`)],
    ]));
}

const pct = (v) => `${(v * 100).toFixed(2)} %`;

/** The rows of the evaluation table: [measure, value, note], those the card has. */
function evaluationRows(ev) {
  const rows = [];
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  if (isNum(ev.accuracy_mean)) {
    const sd = isNum(ev.accuracy_std) ? ` ± ${(ev.accuracy_std * 100).toFixed(2)}` : "";
    const folds = Array.isArray(ev.fold_accuracies) ? `mean ± std over ${ev.fold_accuracies.length} folds` : "";
    rows.push(["Accuracy", `${(ev.accuracy_mean * 100).toFixed(2)}${sd} %`, folds]);
  }
  if (isNum(ev.roc_auc)) rows.push(["ROC AUC", ev.roc_auc.toFixed(4), ""]);
  if (isNum(ev.eer)) rows.push(["Equal error rate", pct(ev.eer), isNum(ev.eer_threshold) ? `at cosine ${num(ev.eer_threshold, 3)}` : ""]);
  const tars = Object.entries(ev.tar_at_far || {})
    .map(([far, v]) => [Number(far), typeof v === "number" ? { tar: v } : v || {}])
    .filter(([far, v]) => Number.isFinite(far) && isNum(v.tar))
    .sort((a, b) => b[0] - a[0]);
  for (const [far, v] of tars) {
    rows.push([`Accepted at FAR ${farText(far)}`, pct(v.tar), isNum(v.threshold) ? `at cosine ${num(v.threshold, 3)}` : ""]);
  }
  // open-set identification (training.evaluation.identification's report), where the card has it
  const open = [ev.identification, ev.open_set].find((o) => o && typeof o === "object");
  if (open) {
    const of = isNum(open.gallery) ? `gallery of ${open.gallery}` : "";
    if (isNum(open.rank1)) rows.push(["Rank-1 identification (closed set)", pct(open.rank1), of]);
    if (isNum(open.identification_rate)) {
      rows.push([`Identified at FPIR ${isNum(open.target_fpir) ? pct(open.target_fpir) : "target"}`, pct(open.identification_rate), of]);
    }
    if (isNum(open.fpir)) rows.push(["Strangers identified (measured FPIR)", pct(open.fpir), isNum(open.strangers) ? `${open.strangers} strangers` : ""]);
  }
  return rows;
}

function evaluation(ev) {
  const sec = h("section", { class: "card" }, h("h2", {}, "Evaluation"));
  const rows = evaluationRows(ev);
  if (!rows.length) {
    sec.append(h("p", { class: "note" }, "The model card has no evaluation figures."));
    return sec;
  }
  const pairs = [ev.genuine_pairs, ev.impostor_pairs].every((n) => typeof n === "number")
    ? ` · ${ev.genuine_pairs} genuine and ${ev.impostor_pairs} impostor pairs` : "";
  if (ev.dataset) sec.append(h("p", {}, h("strong", {}, ev.dataset), pairs));
  sec.append(h("div", { class: "scroll" }, h("table", { class: "data evaluation" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Measure"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Note"))),
    h("tbody", {}, rows.map(([k, v, note]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v), h("td", { class: "note" }, note)))))));
  const about = [["Protocol", ev.protocol], ["Pipeline", ev.pipeline], ["Faces not found", ev.no_face_policy]].filter(([, v]) => v);
  if (about.length) sec.append(h("details", {}, h("summary", {}, "How it was measured"), facts(about)));
  return sec;
}

const FIGURE_CAPTIONS = {
  "roc_det.png": "ROC and DET curves",
  "scores.png": "Genuine and impostor similarity histograms",
};

function figures(names, urls) {
  const sec = h("section", { class: "card" }, h("h2", {}, "Figures"));
  if (!names.length) {
    sec.append(h("p", { class: "note" }, "This model version ships no figures."));
    return sec;
  }
  const grid = h("div", { class: "figures" });
  for (const name of names) {
    const caption = FIGURE_CAPTIONS[name] || name;
    const img = h("img", { alt: caption, class: "model-figure", "data-figure": name });
    const fig = h("figure", {}, img, h("figcaption", {}, caption));
    blobURL(`/model/figures/${encodeURIComponent(name)}`).then((url) => {
      urls.push(url);
      img.src = url;
    }, (err) => fig.replaceChildren(problemView(err)));
    grid.append(fig);
  }
  sec.append(grid);
  return sec;
}

/** The plot's marks for the operating points /verify and /identify use now. */
function operatingMarks(points) {
  const marks = [];
  const v = points?.verify;
  if (v) {
    marks.push({ key: "verify", far: v.far, similarity: v.similarity,
      label: v.far ? `verify · FAR ${farText(v.far)}` : "verify · set explicitly", title: `/verify: ${v.basis}` });
  }
  const i = points?.identify;
  if (i) {
    const who = `${i.gallery_size} ${i.gallery_size === 1 ? "person" : "people"}`;
    marks.push({ key: "identify", far: i.far, similarity: i.similarity,
      label: `identify · ${who} · FAR ${farText(i.far)}`, title: `/identify: ${i.basis}` });
  }
  return marks;
}

function calibration(cal, points) {
  const score = (sim) => 1 / (1 + Math.exp(-(cal.a * sim + cal.b)));
  // the measured table, then the fitted tail's rows past it (the thresholds the service uses there)
  const measured = cal.far_table || [];
  const strictest = Math.min(...measured.map((p) => p.far));
  const tail = cal.far_tail;
  const fitted = (tail?.table || []).filter((p) => p.far < strictest);
  const row = (p, from) => ({
    "false-accept rate": rate(p.far),
    "cosine ≥": num(p.similarity, 4),
    "score ≥": num(score(p.similarity), 4),
    "from": from,
  });
  const table = [...measured.map((p) => row(p, "impostor pairs")), ...fitted.map((p) => row(p, "fitted tail"))];
  const marks = operatingMarks(points);
  const legend = marks.length ? h("ul", { class: "operating-points" }, marks.map((m) => {
    const p = points[m.key];
    return h("li", { "data-op": m.key }, h("span", { class: `op-key op-${m.key}` }, `/${m.key}`),
      `: cosine ≥ ${num(p.similarity, 4)} (score ≥ ${num(p.score, 4)}), ${p.basis}.`);
  })) : null;
  return h("section", { class: "card" },
    h("h2", {}, "Calibration"),
    h("p", {}, `score = sigmoid(a · cos + b), with a = ${num(cal.a, 3)} and b = ${num(cal.b, 3)}: the probability that two faces are the same person, under the calibration data.`),
    facts([
      ["Data", cal.data],
      ["Pairs", `${cal.genuine_pairs ?? "?"} genuine, ${cal.impostor_pairs ?? "?"} impostor`],
      ...(tail ? [["Fitted tail", `shape ${num(tail.shape, 3)}, scale ${num(tail.scale, 4)} above cosine ${num(tail.threshold, 4)} (${tail.exceedances} pairs; Kolmogorov-Smirnov distance ${num(tail.ks_distance, 3)})`]] : []),
    ]),
    h("figure", { class: "plot-figure" }, calibrationPlot(cal, marks),
      h("figcaption", {}, "Score against cosine similarity. Solid lines: the thresholds the service decides with now; dashed: the card's thresholds for other false-accept rates.")),
    legend,
    h("details", {}, h("summary", {}, `Thresholds per false-accept rate (${table.length})`), tableOf(table)));
}
