// Model: the card in use (GET /model), its evaluation figures and calibration with a plot.
import { getJSON } from "../api.js";
import { clear, h, num, rate } from "../dom.js";
import { problemView } from "../problem.js";
import { facts } from "./common.js";
import { calibrationPlot } from "./plot.js";

const HIDDEN_EVAL = new Set(["pipeline_config"]);

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

  async function load() {
    let card;
    try {
      card = await getJSON("/model");
    } catch (err) {
      clear(body, problemView(err));
      return;
    }
    clear(body, summary(card), evaluation(card.evaluation || {}), calibration(card.calibration));
  }
  return { title: "Model", el: body, show: load, hide: () => {} };
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

/** The headline figures of a verification report, when the evaluation has them. */
function headline(ev) {
  const tiles = [];
  if (typeof ev.accuracy_mean === "number") {
    const sd = typeof ev.accuracy_std === "number" ? ` ± ${(ev.accuracy_std * 100).toFixed(2)}` : "";
    tiles.push(["accuracy", `${(ev.accuracy_mean * 100).toFixed(2)}${sd} %`]);
  }
  for (const [far, v] of Object.entries(ev.tar_at_far || {})) {
    const tar = typeof v === "number" ? v : v && v.tar;
    if (typeof tar === "number") tiles.push([`accepted at FAR ${far}`, pct(tar)]);
  }
  if (typeof ev.eer === "number") tiles.push(["equal error rate", pct(ev.eer)]);
  if (typeof ev.roc_auc === "number") tiles.push(["ROC AUC", ev.roc_auc.toFixed(4)]);
  if (!tiles.length) return null;
  return h("div", { class: "tiles" }, tiles.map(([k, v]) => h("div", { class: "tile" }, h("strong", {}, v), h("small", {}, k))));
}

function evaluation(ev) {
  const shown = Object.fromEntries(Object.entries(ev).filter(([k]) => !HIDDEN_EVAL.has(k)));
  const sec = h("section", { class: "card" }, h("h2", {}, "Evaluation"), headline(ev));
  if (!Object.keys(shown).length) sec.append(h("p", { class: "note" }, "The model card has no evaluation figures."));
  else sec.append(tree(shown));
  for (const k of HIDDEN_EVAL) {
    if (ev[k]) sec.append(h("details", {}, h("summary", {}, label(k)), value(ev[k])));
  }
  return sec;
}

function calibration(cal) {
  const score = (sim) => 1 / (1 + Math.exp(-(cal.a * sim + cal.b)));
  const table = (cal.far_table || []).map((p) => ({
    "false-accept rate": rate(p.far),
    "cosine ≥": num(p.similarity, 4),
    "score ≥": num(score(p.similarity), 4),
  }));
  return h("section", { class: "card" },
    h("h2", {}, "Calibration"),
    h("p", {}, `score = sigmoid(a · cos + b), with a = ${num(cal.a, 3)} and b = ${num(cal.b, 3)}: the probability that two faces are the same person, under the calibration data.`),
    facts([
      ["Data", cal.data],
      ["Pairs", `${cal.genuine_pairs ?? "?"} genuine, ${cal.impostor_pairs ?? "?"} impostor`],
    ]),
    h("figure", { class: "plot-figure" }, calibrationPlot(cal),
      h("figcaption", {}, "Score against cosine similarity; dashed lines: the similarity thresholds for the marked false-accept rates.")),
    h("details", {}, h("summary", {}, `Thresholds per false-accept rate (${table.length})`), tableOf(table)));
}
