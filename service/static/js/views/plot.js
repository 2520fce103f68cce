// The calibration curve score = sigmoid(a·cos + b) against cosine similarity, as SVG, with the
// similarity thresholds of the model card's false-accept table marked.
import { s } from "../dom.js";

const W = 440;
const H = 280;
const M = { left: 44, right: 12, top: 12, bottom: 40 };

function sigmoid(z) {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** At most `n` points of the far table, preferring whole decades (1e-2, 1e-3, ...). */
function markers(table, n = 5) {
  const decades = table.filter((p) => Math.abs(Math.log10(p.far) - Math.round(Math.log10(p.far))) < 1e-6);
  const pts = decades.length ? decades : table;
  if (pts.length <= n) return pts;
  const step = (pts.length - 1) / (n - 1);
  return Array.from({ length: n }, (_, i) => pts[Math.round(i * step)]);
}

export function calibrationPlot(cal) {
  const sims = (cal.far_table || []).map((p) => p.similarity);
  // from where the score is about 0.0025 (or the lowest threshold, if lower) to cosine 1
  const zLow = (-6 - cal.b) / cal.a;
  const x0 = Math.max(-1, Math.floor(Math.min(zLow, ...sims, 0.9) * 10) / 10 - 0.1);
  const x1 = 1;
  const px = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - y * (H - M.top - M.bottom);
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
    svg.append(s("text", { x: px(x), y: H - M.bottom + 16, class: "tick", "text-anchor": "middle" },
      (Math.abs(x) < 1e-9 ? 0 : x).toFixed(2)));
  }
  svg.append(s("text", { x: (M.left + W - M.right) / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, "cosine similarity"));
  const mid = (M.top + H - M.bottom) / 2;
  svg.append(s("text", { x: 12, y: mid, class: "axis", "text-anchor": "middle", transform: `rotate(-90 12 ${mid})` }, "score"));

  let lastX = -Infinity;
  for (const p of markers(cal.far_table || [])) {
    const x = px(p.similarity);
    svg.append(s("line", { x1: x, x2: x, y1: py(0), y2: py(1), class: "threshold" }));
    svg.append(s("circle", { cx: x, cy: py(sigmoid(cal.a * p.similarity + cal.b)), r: 3.5, class: "threshold-dot" }));
    if (x - lastX >= 12) {
      // written up the line, left of it, from the bottom of the plot
      svg.append(s("text", { x: x - 3, y: py(0) - 4, class: "threshold-label", transform: `rotate(-90 ${x - 3} ${py(0) - 4})` },
        `FAR ${p.far.toExponential(0).replace("e-", "e−")}`));
      lastX = x;
    }
  }

  const pts = [];
  for (let i = 0; i <= 200; i++) {
    const x = x0 + ((x1 - x0) * i) / 200;
    pts.push(`${px(x).toFixed(1)},${py(sigmoid(cal.a * x + cal.b)).toFixed(1)}`);
  }
  svg.append(s("polyline", { points: pts.join(" "), class: "curve" }));
  return svg;
}
