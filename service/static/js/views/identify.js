// Identify: who is this, if anyone? One answer per face, the candidates, the threshold and why.
import { postPhoto } from "../api.js";
import { busy, field, h, num } from "../dom.js";
import { photoWithFaces } from "../overlay.js";
import { PhotoInput } from "../photo.js";
import { scoreBar } from "../scorebar.js";
import { badge, facts, resultArea, reveal, showError } from "./common.js";

const TONE = { match: "ok", unknown: "bad", ambiguous: "warn", not_checked: "info" };

function answer(face) {
  if (face.result === "match") return `Match: ${face.person.name} (${face.person.person_id})`;
  if (face.result === "ambiguous") return "Ambiguous: several people score above the threshold, too close to tell apart";
  if (face.result === "not_checked") return "Not checked: choose “every face in the photo” to identify it too";
  return "Unknown: nobody enrolled scores above the threshold";
}

/** One line for every face: "2 faces: 1 match — Tony Blair, 1 unknown". */
export function summary(faces) {
  if (faces.length === 1) return `${answer(faces[0])}.`;
  const parts = [];
  const matched = faces.filter((f) => f.result === "match").map((f) => f.person.name);
  if (matched.length) parts.push(`${matched.length} match${matched.length > 1 ? "es" : ""} — ${matched.join(", ")}`);
  for (const [result, word] of [["ambiguous", "ambiguous"], ["unknown", "unknown"], ["not_checked", "not checked"]]) {
    const n = faces.filter((f) => f.result === result).length;
    if (n) parts.push(`${n} ${word}`);
  }
  return `${faces.length} faces: ${parts.join(", ")}.`;
}

export function identifyView() {
  const photo = new PhotoInput("Photo");
  const [facesField, faces] = field(
    "Faces",
    h("select", {}, h("option", { value: "largest" }, "the largest face only"), h("option", { value: "all" }, "every face in the photo")),
  );
  const [topField, topK] = field(
    "Candidates to show",
    h("input", { type: "number", min: "1", max: "100", step: "1", placeholder: "service default" }),
  );
  const submit = h("button", { type: "submit" }, "Identify");
  const out = resultArea();
  const form = h("form", { class: "card", novalidate: true }, photo.el, h("div", { class: "row fields" }, facesField, topField), h("div", { class: "row" }, submit));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!photo.photo) {
      out.replaceChildren(h("div", { class: "alert error", role: "alert" }, h("strong", { class: "alert-title" }, "Choose a photo or take one with the webcam.")));
      return;
    }
    const k = topK.value.trim();
    const shot = photo.photo;
    await busy(submit, "Identifying…", async () => {
      try {
        const res = await postPhoto("/identify", shot, { face_selection: faces.value, top_k: k });
        await showIdentified(out, res, shot);
      } catch (err) {
        await showError(out, err, shot);
      }
    });
  });

  return {
    title: "Identify a person",
    el: h("div", { class: "view-body" }, form, out),
    hide: () => photo.stopCamera(),
  };
}

function candidatesTable(candidates, threshold) {
  if (!candidates.length) return h("p", { class: "note" }, "The gallery is empty: nobody to compare with.");
  return h(
    "table",
    { class: "candidates" },
    h("thead", {}, h("tr", {}, h("th", {}, "Candidate"), h("th", {}, "Score"), h("th", { class: "wide" }, "vs threshold"))),
    h(
      "tbody",
      {},
      candidates.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, h("strong", {}, c.name), h("br"), h("small", {}, c.person_id)),
          h("td", {}, num(c.score, 3), h("br"), h("small", { title: "cosine similarity" }, `cos ${num(c.similarity, 3)}`)),
          h("td", { class: "wide" }, scoreBar(c.score, threshold, { small: true })),
        ),
      ),
    ),
  );
}

async function showIdentified(out, res, shot) {
  const many = res.faces.length > 1;
  const overall = res.faces.some((f) => f.result === "match") ? "match" : res.result;
  const label = (f, i) => (many ? `${i + 1}: ` : "") + (f.result === "match" ? f.person.name : f.result.replace("_", " "));
  const boxes = res.faces.map((f, i) => ({ face: f.face, label: label(f, i), tone: TONE[f.result] }));
  const answers = res.faces.map((f, i) =>
    h(
      "article",
      { class: "face-answer", dataset: { result: f.result } },
      h("h3", {}, many ? `Face ${i + 1}` : "Answer"),
      h("p", {}, badge(f.result.replace("_", " "), TONE[f.result]), " ", answer(f)),
      candidatesTable(f.candidates, res.threshold),
    ),
  );
  out.replaceChildren(
    h("div", { class: `alert ${TONE[overall]}`, role: "status" }, badge(overall.replace("_", " "), TONE[overall]), " ", summary(res.faces)),
    h("div", { class: "split" },
      await photoWithFaces(shot.blob, boxes),
      facts([
        ["Threshold", `score ${num(res.threshold, 4)} (cosine ${num(res.threshold_similarity, 3)})`],
        ["Why", res.threshold_basis],
        ["Gallery size", String(res.gallery_size)],
        ["Model", res.model_version],
      ])),
    ...answers,
  );
  reveal(out);
}
