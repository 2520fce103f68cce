// API errors (problem+json) as messages a person can act on: never raw JSON.
import { h } from "./dom.js";

const HINTS = {
  no_face: "Use a photo where the face is clearly visible and faces the camera.",
  multiple_faces: "Use a photo with only one person, or tick “use the largest face” in the options.",
  low_quality: "Take a new photo: face the camera, come closer, hold still, with even light.",
  unsupported_image: "Choose a JPEG, PNG or WebP photo.",
  unsupported_media_type: "Choose a JPEG, PNG or WebP photo.",
  corrupt_image: "The file looks damaged or incomplete: try another photo.",
  image_too_large: "Use a smaller photo (fewer pixels or a smaller file).",
  person_not_found: "Check the person id, or search for the person by name.",
  already_enrolled: "Choose another person id, or tick “replace the existing photo” in the options.",
  duplicate_face: "If this really is a different person, tick “enrol even if the face matches someone” in the options.",
  not_ready: "The service is starting or one of its parts is down: try again in a moment.",
  network_error: "Check the connection and try again.",
  internal_error: "This is a fault in the service: the operator can find it in the service log.",
};

function sentence(text) {
  const t = String(text || "").trim();
  return t ? t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".") : "";
}

function validationItems(problem) {
  if (!Array.isArray(problem.errors)) return [];
  return problem.errors.map((e) => {
    const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(" → ") : "";
    return sentence(where ? `${where}: ${e.msg}` : e.msg);
  });
}

/** A byte count as a person reads it: 10485760 -> "10 MB". */
export function size(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n)) return String(bytes);
  if (n >= 1024 * 1024) return `${Number((n / 1024 / 1024).toPrecision(3))} MB`;
  if (n >= 1024) return `${Number((n / 1024).toPrecision(3))} KB`;
  return `${n} bytes`;
}

/**
 * The problem's detail in the console's words: the service's own detail speaks to API clients
 * (`set replace=true`, `quality_filter=medium`, byte counts), the console names its own controls.
 */
export function plainDetail(p) {
  if (p.code === "duplicate_face" && p.person_id) {
    const score = Number(p.score);
    return `this face is already enrolled as ${p.name || "someone"} (${p.person_id})` + (Number.isFinite(score) ? `, score ${score.toFixed(3)}` : "");
  }
  if (p.code === "no_face" && p.min_face_size) {
    return `no face was found in the photo; faces smaller than ${p.min_face_size} pixels across are not detected`;
  }
  if (p.code === "already_enrolled" && p.person_id) return `the person id ${p.person_id} is already enrolled`;
  if (p.code === "image_too_large" && p.max_bytes) return `the photo is larger than the upload limit of ${size(p.max_bytes)}`;
  if (p.code === "image_too_large" && p.max_pixels) {
    return `the photo has ${(p.width * p.height / 1e6).toFixed(1)} million pixels, more than the ${(p.max_pixels / 1e6).toFixed(1)} million allowed`;
  }
  // any other clause naming an API parameter (name=value, face_index) is for API clients only
  const clauses = String(p.detail || "")
    .replace(/\s*\([a-z_]+=[^)]*\)/g, "")
    .split(/;\s*/)
    .filter((c) => !/\b[a-z_]+=\w+|\bface_index\b/.test(c));
  return clauses.join("; ").replace(/(\d{4,}) bytes/g, (_, n) => size(n));
}

/** The element showing an error (ApiError or any Error). */
export function problemView(err) {
  const p = err.problem || { title: "Something went wrong", detail: err.message || String(err) };
  const box = h("div", { class: "alert error", role: "alert", dataset: { code: p.code || "" } });
  box.append(h("strong", { class: "alert-title" }, p.title || "Error"));
  const reasons = Array.isArray(p.reasons) ? p.reasons.map((r) => sentence(r.message || r.reason)) : [];
  const items = reasons.length ? reasons : validationItems(p);
  if (items.length) {
    box.append(h("ul", { class: "reasons" }, items.map((t) => h("li", {}, t))));
  } else if (p.detail) {
    box.append(h("p", { class: "alert-detail" }, sentence(plainDetail(p))));
  }
  const hint = HINTS[p.code];
  if (hint) box.append(h("p", { class: "hint" }, hint));
  return box;
}

/** Face boxes carried by an error (low_quality: `face`; multiple_faces: `faces`). */
export function problemFaces(err) {
  const p = err.problem || {};
  if (Array.isArray(p.faces)) return p.faces.map((f, i) => ({ face: f, label: `face ${i + 1}`, tone: "bad" }));
  if (p.face && Array.isArray(p.face.box)) return [{ face: p.face, label: "rejected", tone: "bad" }];
  return [];
}
