// A score (0..1) as a bar with the threshold marked on it.
import { h, num } from "./dom.js";

export function scoreBar(score, threshold, { small = false } = {}) {
  const pass = typeof score === "number" && score >= threshold;
  const fill = h("div", { class: `bar-fill ${pass ? "pass" : "fail"}` });
  fill.style.width = `${Math.max(0, Math.min(1, score || 0)) * 100}%`;
  const mark = h("div", { class: "bar-mark", title: `threshold ${num(threshold)}` });
  mark.style.left = `${Math.max(0, Math.min(1, threshold)) * 100}%`;
  const bar = h("div", {
    class: `bar${small ? " small" : ""}`,
    role: "meter",
    "aria-valuemin": "0",
    "aria-valuemax": "1",
    "aria-valuenow": num(score),
    "aria-label": `score ${num(score)} against threshold ${num(threshold)}`,
  }, fill, mark);
  if (small) return bar;
  const legend = h(
    "div",
    { class: "bar-legend" },
    h("span", {}, `score ${num(score)}`),
    h("span", {}, `${pass ? "≥" : "<"} threshold ${num(threshold)}`),
  );
  return h("div", { class: "bar-wrap" }, bar, legend);
}
