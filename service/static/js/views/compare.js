// Compare: are the faces of two photos the same person? Nobody enrolled, nothing stored.
import { postPhotos } from "../api.js";
import { busy, field, h, num } from "../dom.js";
import { photoWithFaces } from "../overlay.js";
import { PhotoInput } from "../photo.js";
import { scoreBar } from "../scorebar.js";
import { badge, facts, resultArea, reveal, showError } from "./common.js";

export function compareView() {
  const first = new PhotoInput("First photo (for example the ID photo)");
  const second = new PhotoInput("Second photo (for example the selfie)");
  const [thresholdField, threshold] = field(
    "Score threshold (optional)",
    h("input", { type: "number", min: "0.01", max: "0.99", step: "0.01", inputmode: "decimal" }),
    "Left empty, the service uses the verification threshold for the configured false-accept rate.",
  );
  const options = h("details", { class: "options" }, h("summary", {}, "Options"), thresholdField);
  const submit = h("button", { type: "submit" }, "Compare");
  const out = resultArea();
  const form = h(
    "form",
    { class: "card", novalidate: true },
    h("p", { class: "hint" }, "The two photos are compared with each other only: nobody needs to be enrolled, and neither photo is kept."),
    h("div", { class: "pair" }, first.el, second.el),
    options,
    h("div", { class: "row" }, submit),
  );

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fail = (m) => out.replaceChildren(h("div", { class: "alert error", role: "alert" }, h("strong", { class: "alert-title" }, m)));
    if (!first.photo || !second.photo) return fail("Choose both photos, or take them with the webcam.");
    const t = threshold.value.trim();
    if (t && !(Number(t) > 0 && Number(t) < 1)) return fail("The threshold must be a number between 0 and 1.");
    const a = first.photo;
    const b = second.photo;
    out.replaceChildren();
    await busy(submit, "Comparing…", async () => {
      try {
        const res = await postPhotos("/compare", { image_a: a, image_b: b }, { threshold: t });
        await showCompared(out, res, a, b);
      } catch (err) {
        await showError(out, err, null);
      }
    });
  });

  return {
    title: "Compare two photos",
    el: h("div", { class: "view-body" }, form, out),
    hide: () => {
      first.stopCamera();
      second.stopCamera();
    },
  };
}

function faceNote(side) {
  if (side.faces_found < 2) return "one face found";
  return `${side.faces_found} faces found; the largest was compared`;
}

async function figure(photo, side, tone, label) {
  const boxes = side.faces.map((f, i) =>
    i === side.face_index ? { face: f, label, tone } : { face: f, label: `face ${i + 1}`, tone: "info" });
  return photoWithFaces(photo.blob, boxes, `${photo.name || "photo"}: ${faceNote(side)}`);
}

async function showCompared(out, res, a, b) {
  const tone = res.match ? "ok" : "bad";
  const close = !res.match && res.score >= res.threshold / 2;
  const verdict = res.match
    ? "The two photos show the same person, as far as the model can tell."
    : close
      ? "Not confirmed: the faces look alike, but not enough to say they are the same person."
      : "The two photos show different people, as far as the model can tell.";
  out.replaceChildren(
    h("div", { class: `alert ${tone}`, role: "status" }, badge(res.match ? "Same person" : close ? "Not confirmed" : "Different people", tone), " ", verdict),
    scoreBar(res.score, res.threshold),
    h("div", { class: "pair compared" },
      await figure(a, res.a, tone, "compared"),
      await figure(b, res.b, tone, "compared")),
    facts([
      ["Score", num(res.score, 4)],
      ["Threshold", `${num(res.threshold, 4)} (${res.threshold_basis})`],
      ["Cosine similarity", num(res.similarity, 4)],
      ["Model", res.model_version],
    ]),
  );
  out.dataset.compared = String(Number(out.dataset.compared || 0) + 1); // a new answer (the tests wait on it)
  reveal(out);
}
