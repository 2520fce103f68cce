// Pieces shared by the views: the result area and the quality measures table.
import { h, num } from "../dom.js";
import { photoWithFaces } from "../overlay.js";
import { problemFaces, problemView } from "../problem.js";

/** Renders an error into `out`: the message and, when the error carries faces, the photo with them. */
export async function showError(out, err, photo) {
  const faces = problemFaces(err);
  const p = err.problem || {};
  const figure = photo && faces.length ? await photoWithFaces(photo.blob, faces) : null;
  const measures = p.quality ? h("div", {}, h("h3", {}, "Quality"), qualityTable(p.quality, [], p.reasons || [])) : null;
  out.replaceChildren(problemView(err));
  if (figure || measures) out.append(h("div", { class: "split" }, figure || h("div"), measures || h("div")));
  reveal(out);
}

/** Brings a freshly rendered result into view (it sits under the form). */
export function reveal(out) {
  const box = out.getBoundingClientRect();
  if (box.top > window.innerHeight - 80 || box.top < 0) out.scrollIntoView({ block: "start" });
}

const MEASURES = [
  ["eye_distance", "Face size", (v) => `${num(v, 0)} px between the eyes`],
  ["sharpness", "Sharpness", (v) => `${num(v, 1)} (higher is sharper)`],
  ["yaw", "Head turn", (v) => `${num(v, 2)} (0 facing the camera, 1 in profile)`],
  ["detection_score", "Detector confidence", (v) => num(v, 3)],
];

// which measure each quality reason is about (service/pipeline/quality.py)
const REASON_MEASURE = {
  face_too_small: "eye_distance",
  too_blurred: "sharpness",
  turned_too_far: "yaw",
  low_confidence: "detection_score",
};

/** The measures; those a reason failed are marked (class failing) with the limit they missed. */
export function qualityTable(quality, extra = [], reasons = []) {
  const failed = new Map(reasons.map((r) => [REASON_MEASURE[r.reason], r]));
  const limit = (k, r, show) => (r.limit === undefined ? "" : ` — needs ${k === "yaw" ? "at most" : "at least"} ${show(r.limit).split(" (")[0]}`);
  return h(
    "dl",
    { class: "facts quality" },
    MEASURES.filter(([k]) => k in quality).map(([k, label, show]) => {
      const r = failed.get(k);
      if (!r) return [h("dt", {}, label), h("dd", {}, show(quality[k]))];
      return [
        h("dt", { class: "failing" }, label),
        h("dd", { class: "failing" }, show(quality[k]), h("strong", {}, limit(k, r, show))),
      ];
    }),
    extra.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

export function resultArea() {
  return h("section", { class: "result", "aria-live": "polite", tabindex: "-1" });
}

export function badge(text, tone) {
  return h("span", { class: `badge ${tone}` }, text);
}
