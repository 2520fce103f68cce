// Verify: is this photo the enrolled person? Match or no match, the score against the threshold.
import { blobURL, getJSON, postPhoto } from "../api.js";
import { busy, field, h, num } from "../dom.js";
import { pickableFaces } from "../facepick.js";
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
    const admin = ctx.can("admin");
    const run = (faceIndex) =>
      busy(submit, "Verifying…", async () => {
        try {
          const res = await postPhoto("/verify", shot, { person_id: personId, threshold: t, face_index: faceIndex });
          const person = picker.selected && picker.selected.person_id === personId ? picker.selected : admin ? await lookUp(personId) : null;
          await showVerified(out, res, person, personId, shot, admin, run);
        } catch (err) {
          await showError(out, err, shot);
        }
      });
    await run(undefined);
  });

  return {
    title: "Verify a person",
    el: h("div", { class: "view-body" }, form, out),
    hide: () => photo.stopCamera(),
  };
}

/** The enrolled person ({person_id, name}) for a typed id, or null if it cannot be looked up. */
async function lookUp(personId) {
  try {
    return await getJSON(`/people/${encodeURIComponent(personId)}`);
  } catch {
    return null;
  }
}

/** The enrolled reference crop beside the probe (admin keys only can read it). */
async function referenceCrop(person) {
  try {
    const url = await blobURL(`/people/${encodeURIComponent(person.person_id)}/crop`);
    const img = h("img", { class: "reference", alt: `enrolled reference photo of ${person.name}`, src: url });
    img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    return h("figure", { class: "photo-figure reference-figure" }, img, h("figcaption", {}, `Enrolled: ${person.name}`));
  } catch {
    return null;
  }
}

/** Match, a close miss (not confirmed: the faces look alike, not enough to say) or no match. */
export function verdict(res) {
  if (res.match) return "match";
  return res.score >= res.threshold / 2 ? "not_confirmed" : "no_match";
}

async function showVerified(out, res, person, personId, shot, admin, rerun) {
  const who = person ? `${person.name} (${personId})` : personId;
  const v = verdict(res);
  const tone = { match: "ok", not_confirmed: "warn", no_match: "bad" }[v];
  const words = {
    match: `This photo is ${who}.`,
    not_confirmed: `Not confirmed: the face looks like ${who}, but not enough to say it is.`,
    no_match: `This photo is not ${who}, as far as the model can tell.`,
  }[v];
  const many = res.faces_found > 1;
  const which = many
    ? ` Checked face ${res.face_index + 1} of ${res.faces_found}${res.face_index === 0 ? " (the largest)" : ""}; click another face to check it instead.`
    : "";
  const probe = await pickableFaces(shot.blob, res.faces, {
    chosen: res.face_index,
    tone,
    label: (i) => (i === res.face_index ? `${many ? `${i + 1}: ` : ""}${{ match: "match", not_confirmed: "not confirmed", no_match: "no match" }[v]}` : `face ${i + 1}`),
    verb: "Check",
    onPick: (i) => rerun(i),
  });
  const reference = admin && person ? await referenceCrop(person) : null;
  out.replaceChildren(
    h(
      "div",
      { class: `alert ${tone}`, role: "status", dataset: { faceIndex: String(res.face_index) } },
      badge({ match: "Match", not_confirmed: "Not confirmed", no_match: "No match" }[v], tone),
      " ",
      words,
      which,
    ),
    scoreBar(res.score, res.threshold),
    h("div", { class: "split" },
      reference ? h("div", { class: "pair" }, probe, reference) : probe,
      facts([
        ["Score", num(res.score, 4)],
        ["Threshold", `${num(res.threshold, 4)} (${res.threshold_basis})`],
        ["Cosine similarity", num(res.similarity, 4)],
        ["Faces in the photo", String(res.faces_found)],
        ["Model", res.model_version],
      ])),
  );
  reveal(out);
}
