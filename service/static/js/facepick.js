// Choosing one face of a photo with several: click its box on the photo, or its button.
import { h } from "./dom.js";
import { photoWithFaces } from "./overlay.js";

/** The index of the face whose box holds the photo point (x, y); the smallest box wins on overlap. */
export function faceAt(faces, x, y) {
  let best = -1;
  let bestArea = Infinity;
  faces.forEach((f, i) => {
    const [x1, y1, x2, y2] = f.box;
    const area = (x2 - x1) * (y2 - y1);
    if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < bestArea) {
      best = i;
      bestArea = area;
    }
  });
  return best;
}

/**
 * The photo with every face boxed (the chosen one in `tone`, the others in blue), a click on a box
 * or on a "verb face N" button calls onPick(index). faces: the API's faces list (largest first).
 */
export async function pickableFaces(blob, faces, { chosen = -1, tone = "info", label, verb, caption = "", onPick }) {
  const boxes = faces.map((face, i) => ({
    face,
    label: label ? label(i) : `face ${i + 1}`,
    tone: i === chosen ? tone : "info",
  }));
  const figure = await photoWithFaces(blob, boxes, caption);
  const canvas = figure.querySelector && figure.querySelector("canvas");
  if (!canvas || faces.length < 2) return figure;
  canvas.classList.add("pickable");
  canvas.title = "Click a face to choose it";
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ((ev.clientX - r.left) / r.width) * canvas.width;
    const y = ((ev.clientY - r.top) / r.height) * canvas.height;
    const i = faceAt(faces, x, y);
    if (i >= 0 && i !== chosen) onPick(i);
  });
  const buttons = faces.map((_, i) =>
    h(
      "button",
      {
        type: "button",
        class: i === chosen ? "face-pick" : "face-pick secondary",
        "aria-pressed": String(i === chosen),
        dataset: { faceIndex: String(i) },
        onclick: () => i !== chosen && onPick(i),
      },
      `${verb} face ${i + 1}`,
    ),
  );
  return h("div", { class: "face-picker" }, figure, h("div", { class: "row face-picks" }, buttons));
}
