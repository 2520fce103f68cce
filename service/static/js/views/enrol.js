// Enrol: name, optional person id, a photo; the result shows the face box and quality measures.
import { postPhoto } from "../api.js";
import { busy, field, h } from "../dom.js";
import { pickableFaces } from "../facepick.js";
import { photoWithFaces } from "../overlay.js";
import { problemView } from "../problem.js";
import { PhotoInput } from "../photo.js";
import { badge, qualityTable, resultArea, reveal, showError } from "./common.js";

const ID_PATTERN = "[A-Za-z0-9][A-Za-z0-9._@:\\-]{0,127}";

export function enrolView() {
  const [nameField, name] = field("Name", h("input", { type: "text", required: true, maxlength: 200, autocomplete: "off" }));
  const [idField, personId] = field(
    "Person id (optional)",
    h("input", { type: "text", pattern: ID_PATTERN, maxlength: 128, autocomplete: "off" }),
    "e.g. an employee number: letters, digits and . _ @ : -; left empty, the service makes one up.",
  );
  const photo = new PhotoInput("Photo (one face, looking at the camera)", (chosen) => {
    if (chosen) out.querySelector('.alert.error[data-field="photo"]')?.remove();
  });
  const largest = h("input", { type: "checkbox" });
  const replace = h("input", { type: "checkbox" });
  const duplicate = h("input", { type: "checkbox" });
  const options = h(
    "details",
    { class: "options" },
    h("summary", {}, "Options"),
    h("label", { class: "check" }, largest, "Use the largest face when the photo has several"),
    h("label", { class: "check" }, replace, "Replace the existing photo if this person id is already enrolled"),
    h("label", { class: "check" }, duplicate, "Enrol even if the face matches someone already enrolled"),
  );
  const submit = h("button", { type: "submit" }, "Enrol");
  const out = resultArea();
  const form = h("form", { class: "card", novalidate: true }, nameField, idField, photo.el, options, h("div", { class: "row" }, submit));

  // an error about a field goes as soon as the field is put right
  for (const input of [name, personId]) {
    input.addEventListener("input", () => {
      const stale = out.querySelector(`.alert.error[data-field="${input.dataset.field}"]`);
      if (stale && (input === name ? input.value.trim() : !input.value.trim() || input.checkValidity())) stale.remove();
    });
  }
  name.dataset.field = "name";
  personId.dataset.field = "person_id";

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!name.value.trim()) return invalid(out, name, "Enter the person's name.");
    if (personId.value.trim() && !personId.checkValidity()) {
      return invalid(out, personId, "The person id may only hold letters, digits and . _ @ : - (starting with a letter or digit).");
    }
    if (!photo.photo) return invalid(out, null, "Choose a photo or take one with the webcam.");
    const shot = photo.photo;
    const fields = {
      name: name.value.trim(),
      person_id: personId.value.trim(),
      face_selection: largest.checked ? "largest" : "single",
      replace: replace.checked,
      allow_duplicate: duplicate.checked,
    };
    const run = (faceIndex) =>
      busy(submit, "Enrolling…", async () => {
        try {
          const res = await postPhoto("/enroll", shot, { ...fields, face_index: faceIndex });
          await showEnrolled(out, res, shot);
          // ready for the next person: the result stays, the form is empty again
          form.reset();
          photo.reset();
        } catch (err) {
          if (err.code === "multiple_faces" && Array.isArray(err.problem.faces)) await chooseFace(out, err, shot, run);
          else await showError(out, err, shot);
        }
      });
    await run(undefined);
  });

  return {
    title: "Enrol a person",
    el: h("div", { class: "view-body" }, form, out),
    hide: () => photo.stopCamera(),
  };
}

function invalid(out, input, message) {
  const field = input ? input.dataset.field : "photo";
  out.replaceChildren(h("div", { class: "alert error", role: "alert", dataset: { field } }, h("strong", { class: "alert-title" }, message)));
  if (input) input.focus();
}

/** Several faces: the photo with every face, and a click on one enrols that face. */
async function chooseFace(out, err, shot, run) {
  const faces = err.problem.faces;
  const box = problemView(err);
  box.querySelector(".alert-detail")?.remove();
  box.querySelector(".hint")?.remove();
  box.append(h("p", { class: "hint" }, `The photo holds ${faces.length} faces: click the face to enrol, or use one of the buttons under the photo.`));
  out.replaceChildren(box, await pickableFaces(shot.blob, faces, { verb: "Enrol", onPick: (i) => run(i) }));
  reveal(out);
}

async function showEnrolled(out, res, shot) {
  const p = res.person;
  out.replaceChildren(
    h(
      "div",
      { class: "alert ok", role: "status" },
      badge(res.replaced ? "Replaced" : "Enrolled", "ok"),
      " ",
      h("strong", {}, p.name),
      ` is enrolled as person id `,
      h("code", {}, p.person_id),
      ".",
    ),
    h("div", { class: "split" },
      await photoWithFaces(
        shot.blob,
        [{ face: res.face, label: p.name, tone: "ok" }],
        res.faces_found > 1 ? `Face ${res.face_index + 1} of ${res.faces_found} was enrolled.` : "The face that was enrolled.",
      ),
      h("div", {}, h("h3", {}, "Quality"), qualityTable(res.quality, [["Model", res.model_version]]))),
  );
  reveal(out);
}
