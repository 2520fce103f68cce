// A photo with face boxes drawn on a canvas. Boxes are in the photo's pixels after EXIF
// rotation; an <img> decodes with image-orientation: from-image, so drawing it on a canvas of
// its natural size puts the boxes where the service measured them.
import { h } from "./dom.js";

const TONES = { ok: "#1f9d55", bad: "#d64545", warn: "#d98e04", info: "#2f6fde" };

/** Decodes an image Blob; resolves to an HTMLImageElement, or null if the browser cannot show it. */
export async function decodeImage(blob) {
  const url = URL.createObjectURL(blob);
  const img = new Image();
  img.src = url;
  try {
    await img.decode();
    return img;
  } catch {
    return null;
  } finally {
    URL.revokeObjectURL(url);
  }
}

function drawLabel(ctx, text, x, y, color, size) {
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const w = ctx.measureText(text).width + size * 0.6;
  const hgt = size * 1.4;
  const top = y - hgt >= 0 ? y - hgt : y;
  ctx.fillStyle = color;
  ctx.fillRect(x, top, w, hgt);
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x + size * 0.3, top + hgt / 2);
}

/**
 * A <figure> holding a canvas with the photo and the boxes:
 * faces = [{face: {box: [x1, y1, x2, y2], landmarks}, label, tone: ok|bad|warn|info}].
 */
export async function photoWithFaces(blob, faces = [], caption = "") {
  const img = await decodeImage(blob);
  if (!img) {
    return h("p", { class: "note" }, "This browser cannot display the photo, so the face box cannot be drawn.");
  }
  const W = img.naturalWidth;
  const H = img.naturalHeight;
  const canvas = h("canvas", { width: W, height: H, class: "photo", role: "img" });
  canvas.setAttribute(
    "aria-label",
    faces.length ? `photo with ${faces.length} face box${faces.length > 1 ? "es" : ""}` : "photo",
  );
  canvas.dataset.boxes = String(faces.length);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, W, H);
  const line = Math.max(2, Math.round(Math.max(W, H) / 250));
  const font = Math.max(12, Math.round(Math.max(W, H) / 40));
  for (const { face, label, tone } of faces) {
    const [x1, y1, x2, y2] = face.box;
    const color = TONES[tone] || TONES.info;
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = color;
    for (const [lx, ly] of face.landmarks || []) {
      ctx.beginPath();
      ctx.arc(lx, ly, line * 1.2, 0, 2 * Math.PI);
      ctx.fill();
    }
    if (label) drawLabel(ctx, label, x1, y1, color, font);
  }
  return h("figure", { class: "photo-figure" }, canvas, caption ? h("figcaption", {}, caption) : null);
}
