// The calibration curve score = sigmoid(a·cos + b) against cosine similarity, as SVG: the
// thresholds of the model card's false-accept table (whole decades) dashed, and the operating
// points the service decides with now (/verify's false-accept rate, /identify's for the gallery
// size) as solid lines labelled above the plot. No two labels overlap: the operating points'
// labels are stacked in rows, a decade label too close to another is left out.
import { s } from "../dom.js";

const W = 440;
const M = { left: 48, right: 12, bottom: 46 }; // room for ticks and axis titles that never touch
const PLOT_H = 220; // the plot area's height; the label rows above it add to the figure's
const OP_FONT = 11; // px, .op-label
const OP_CHAR = 0.62 * OP_FONT; // a generous average glyph width (labels are short, digits mostly)
const OP_ROW = 16; // px between label rows
const DECADE_GAP = 14; // px: rotated decade labels are about 11 px wide

function sigmoid(z) {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** A false-accept rate as written on the plot: 1e−3, 2.5e−3, 0.01 -> 1e−2. */
export function farText(far) {
  const exp = Math.floor(Math.log10(far) + 1e-9);
  const mant = far / 10 ** exp;
  const m = Math.abs(mant - Math.round(mant)) < 1e-6 ? String(Math.round(mant)) : mant.toPrecision(2);
  return `${m}e−${-exp}`;
}

const sameFar = (a, b) => typeof a === "number" && typeof b === "number" && Math.abs(Math.log10(a / b)) < 1e-6;

/** At most `n` whole decades of the far table (1e-2, 1e-3, ...), always those in `keep`. */
function decades(table, keep, n = 6) {
  const whole = table.filter((p) => Math.abs(Math.log10(p.far) - Math.round(Math.log10(p.far))) < 1e-6);
  const pts = whole.length ? whole : table;
  if (pts.length <= n) return pts;
  const must = pts.filter((p) => keep.some((f) => sameFar(f, p.far)));
  const step = (pts.length - 1) / (n - 1);
  const picked = new Set([...must, ...Array.from({ length: n }, (_, i) => pts[Math.round(i * step)])]);
  return pts.filter((p) => picked.has(p));
}

/** Rows for labels [{left, width}] sorted by left edge: the first row each fits in without touching. */
function stack(labels, gap = 8) {
  const rowsEnd = [];
  for (const l of labels.sort((a, b) => a.left - b.left)) {
    let r = rowsEnd.findIndex((end) => l.left >= end + gap);
    if (r < 0) r = rowsEnd.push(-Infinity) - 1;
    rowsEnd[r] = l.left + l.width;
    l.row = r;
  }
  return rowsEnd.length;
}

/**
 * `points`: the operating points to mark, [{key, similarity, label, title}] (key: a class suffix,
 * e.g. "verify"); their thresholds are the solid lines.
 */
export function calibrationPlot(cal, points = []) {
  const table = cal.far_table || [];
  const sims = [...table.map((p) => p.similarity), ...points.map((p) => p.similarity)];
  // from where the score is about 0.0025 (or the lowest threshold, if lower) to cosine 1
  const zLow = (-6 - cal.b) / cal.a;
  const x0 = Math.max(-1, Math.floor(Math.min(zLow, ...sims, 0.9) * 10) / 10 - 0.1);
  const x1 = 1;
  const px = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);

  // the operating points' labels, centred on their lines where the figure's width allows
  const ops = points.map((p) => {
    const x = px(p.similarity);
    const width = p.label.length * OP_CHAR + 4;
    const left = Math.min(Math.max(x - width / 2, 2), W - 2 - width);
    return { ...p, x, width, left };
  });
  const rows = stack(ops);
  const top = 8 + rows * OP_ROW + 6;
  const H = top + PLOT_H + M.bottom;
  const py = (y) => top + PLOT_H - y * PLOT_H;

  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img",
    "aria-label": `score against cosine similarity: sigmoid(${cal.a.toFixed(2)}·cos + ${cal.b.toFixed(2)})` });

  for (let y = 0; y <= 1.0001; y += 0.25) {
    svg.append(s("line", { x1: px(x0), x2: px(x1), y1: py(y), y2: py(y), class: "grid" }));
    svg.append(s("text", { x: M.left - 6, y: py(y) + 4, class: "tick", "text-anchor": "end" }, y.toFixed(2)));
  }
  const span = x1 - x0;
  const step = span > 1 ? 0.25 : span > 0.5 ? 0.1 : 0.05;
  for (let x = Math.ceil(x0 / step - 1e-9) * step; x <= x1 + 1e-9; x += step) {
    svg.append(s("line", { x1: px(x), x2: px(x), y1: py(0), y2: py(1), class: "grid" }));
    svg.append(s("text", { x: px(x), y: py(0) + 20, class: "tick", "text-anchor": "middle" },
      (Math.abs(x) < 1e-9 ? 0 : x).toFixed(2)));
  }
  svg.append(s("text", { x: (M.left + W - M.right) / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, "cosine similarity"));
  const mid = (top + H - M.bottom) / 2;
  svg.append(s("text", { x: 12, y: mid, class: "axis", "text-anchor": "middle", transform: `rotate(-90 12 ${mid})` }, "score"));

  // the card's decades, dashed; one the operating points mark already is drawn by them
  let lastX = -Infinity;
  const opFars = points.map((p) => p.far);
  for (const p of decades(table, opFars)) {
    if (points.some((o) => sameFar(o.far, p.far))) continue;
    const x = px(p.similarity);
    svg.append(s("line", { x1: x, x2: x, y1: py(0), y2: py(1), class: "threshold" }));
    svg.append(s("circle", { cx: x, cy: py(sigmoid(cal.a * p.similarity + cal.b)), r: 3, class: "threshold-dot" }));
    if (x - lastX >= DECADE_GAP) {
      // written up the line, left of it, from the bottom of the plot
      svg.append(s("text", { x: x - 3, y: py(0) - 4, class: "threshold-label", "data-far": p.far,
        transform: `rotate(-90 ${x - 3} ${py(0) - 4})` }, `FAR ${farText(p.far)}`));
      lastX = x;
    }
  }

  const pts = [];
  for (let i = 0; i <= 200; i++) {
    const x = x0 + ((x1 - x0) * i) / 200;
    pts.push(`${px(x).toFixed(1)},${py(sigmoid(cal.a * x + cal.b)).toFixed(1)}`);
  }
  svg.append(s("polyline", { points: pts.join(" "), class: "curve" }));

  // the operating points: a solid line from the axis up to its label; the labels go on top, so
  // that a line passing a label of another row runs under the label's halo
  for (const o of ops) {
    const baseline = 8 + o.row * OP_ROW + OP_FONT;
    svg.append(s("line", { x1: o.x, x2: o.x, y1: py(0), y2: baseline + 4, class: `op-line op-${o.key}` }));
    svg.append(s("circle", { cx: o.x, cy: py(sigmoid(cal.a * o.similarity + cal.b)), r: 4.5, class: `op-dot op-${o.key}` }));
  }
  for (const o of ops) {
    const baseline = 8 + o.row * OP_ROW + OP_FONT;
    svg.append(s("text", { x: o.left + 2, y: baseline, class: `op-label op-${o.key}`, "data-op": o.key },
      s("title", {}, o.title || o.label), o.label));
  }
  return svg;
}
