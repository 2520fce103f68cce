// Verify: is this photo the enrolled person? Match or no match, the score against the threshold.
import { postPhoto } from "../api.js";
import { busy, field, h, num } from "../dom.js";
import { photoWithFaces } from "../overlay.js";
import { PhotoInput } from "../photo.js";
import { PersonPicker } from "../picker.js";
import { scoreBar } from "../scorebar.js";
import { badge, facts, resultArea, reveal, showError } from "./common.js";

export function verifyView(ctx) {
  const picker = new PersonPicker(ctx.can("admin"));
  const photo = new PhotoInput("Photo to check");
  const [thresholdField, threshold] = field(
    "Score threshold (optional)",
    h("input", { type: "number", min: "0.01", max: "0.99", step: "0.01", inputmode: "decimal" }),
    "Left empty, the service uses its threshold for the configured false-accept rate.",
  );
  const options = h("details", { class: "options" }, h("summary", {}, "Options"), thresholdField);
  const submit = h("button", { type: "submit" }, "Verify");
  const out = resultArea();
  const form = h("form", { class: "card", novalidate: true }, picker.el, photo.el, options, h("div", { class: "row" }, submit));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const personId = picker.personId;
    const fail = (m) => out.replaceChildren(h("div", { class: "alert error", role: "alert" }, h("strong", { class: "alert-title" }, m)));
    if (!personId) return fail("Choose the person to verify against.");
    if (!photo.photo) return fail("Choose a photo or take one with the webcam.");
    const t = threshold.value.trim();
    if (t && !(Number(t) > 0 && Number(t) < 1)) return fail("The threshold must be a number between 0 and 1.");
    const shot = photo.photo;
    await busy(submit, "Verifying…", async () => {
      try {
        const res = await postPhoto("/verify", shot, { person_id: personId, threshold: t });
        await showVerified(out, res, picker.selected, personId, shot);
      } catch (err) {
        await showError(out, err, shot);
      }
    });
  });

  return {
    title: "Verify a person",
    el: h("div", { class: "view-body" }, form, out),
    hide: () => photo.stopCamera(),
  };
}

async function showVerified(out, res, person, personId, shot) {
  const who = person ? `${person.name} (${personId})` : personId;
  const tone = res.match ? "ok" : "bad";
  out.replaceChildren(
    h(
      "div",
      { class: `alert ${tone}`, role: "status" },
      badge(res.match ? "Match" : "No match", tone),
      " ",
      res.match ? `This photo is ${who}.` : `This photo is not ${who}, as far as the model can tell.`,
    ),
    scoreBar(res.score, res.threshold),
    h("div", { class: "split" },
      await photoWithFaces(shot.blob, [{ face: res.face, label: res.match ? "match" : "no match", tone }]),
      facts([
        ["Score", num(res.score, 4)],
        ["Threshold", `${num(res.threshold, 4)} (${res.threshold_basis})`],
        ["Cosine similarity", num(res.similarity, 4)],
        ["Model", res.model_version],
      ])),
  );
  reveal(out);
}
