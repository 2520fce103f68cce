// A photo from a file or from the webcam (getUserMedia), with a preview and a retake.
import { h } from "./dom.js";

function cameraMessage(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The browser was not allowed to use the camera. Allow it in the site settings, or choose a file.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Choose a file instead.";
    case "NotReadableError":
      return "The camera is in use by another program. Close it, or choose a file.";
    default:
      return `The camera could not be started${err && err.message ? `: ${err.message}` : ""}. Choose a file instead.`;
  }
}

// Every PhotoInput on the page: a pasted photo goes to the one holding the focus, else to the
// first one shown without a photo, else to the first one shown.
const inputs = new Set();
document.addEventListener("paste", (ev) => {
  const items = [...(ev.clipboardData ? ev.clipboardData.files : [])].filter((f) => f.type.startsWith("image/"));
  if (!items.length) return;
  const shown = [...inputs].filter((i) => i.el.isConnected && i.el.offsetParent !== null);
  const target =
    shown.find((i) => i.el.contains(document.activeElement)) || shown.find((i) => !i.photo) || shown[0];
  if (!target) return;
  ev.preventDefault();
  target.take(items[0], "pasted");
});

export class PhotoInput {
  /** `onChange(photo|null)` runs whenever a photo is chosen, captured or cleared. */
  constructor(label, onChange = () => {}) {
    this.onChange = onChange;
    this.photo = null; // {blob, name}
    this.stream = null;
    this.previewURL = null;

    this.file = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp,image/*", class: "visually-hidden" });
    this.file.addEventListener("change", () => this.#fromFile());
    const fileLabel = h("label", { class: "button secondary" }, this.file, "Choose a photo…");
    this.camButton = h("button", { type: "button", class: "secondary", onclick: () => this.startCamera() }, "Use the webcam");
    this.video = h("video", { class: "camera", autoplay: true, playsinline: true, muted: true });
    this.video.muted = true;
    // the preview is mirrored (people expect a mirror); the photo taken is not
    const guide = h("div", { class: "face-guide", "aria-hidden": "true" });
    const stage = h("div", { class: "camera-stage" }, this.video, guide,
      h("p", { class: "guide-hint" }, "Put your face inside the oval, look at the camera"));
    this.snap = h("button", { type: "button", onclick: () => this.capture() }, "Take the photo");
    this.cancel = h("button", { type: "button", class: "secondary", onclick: () => this.stopCamera() }, "Cancel");
    this.cameraBox = h("div", { class: "camera-box", hidden: true }, stage, h("div", { class: "row" }, this.snap, this.cancel));
    this.img = h("img", { class: "preview", alt: "the chosen photo" });
    this.info = h("small", { class: "hint" });
    this.retake = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => this.startCamera() }, "Retake");
    this.previewBox = h("div", { class: "preview-box", hidden: true }, this.img, h("div", { class: "row" }, this.info, this.retake));
    this.message = h("p", { class: "alert warn", role: "status", hidden: true });
    this.el = h(
      "fieldset",
      { class: "photo-input" },
      h("legend", {}, label),
      h("div", { class: "row" }, fileLabel, this.camButton, h("small", { class: "hint drop-hint" }, "or drop a photo here, or paste one")),
      this.message,
      this.cameraBox,
      this.previewBox,
    );
    this.el.addEventListener("dragover", (ev) => {
      if (![...ev.dataTransfer.types].includes("Files")) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
      this.el.classList.add("dropping");
    });
    this.el.addEventListener("dragleave", (ev) => {
      if (!this.el.contains(ev.relatedTarget)) this.el.classList.remove("dropping");
    });
    this.el.addEventListener("drop", (ev) => {
      ev.preventDefault();
      this.el.classList.remove("dropping");
      const f = [...ev.dataTransfer.files][0];
      if (f) this.take(f, "dropped");
    });
    inputs.add(this);
  }

  /** A photo dropped or pasted (a File): checked to be an image, then chosen like a file. */
  take(file, how) {
    this.stopCamera();
    if (!file.type.startsWith("image/")) {
      this.message.textContent = `The ${how} file is not a photo: choose a JPEG, PNG or WebP picture.`;
      this.message.hidden = false;
      return;
    }
    this.message.hidden = true;
    this.#set({ blob: file, name: file.name || `${how}-photo.png` }, false);
  }

  #set(photo, fromCamera) {
    this.photo = photo;
    if (this.previewURL) URL.revokeObjectURL(this.previewURL);
    this.previewURL = null;
    this.previewBox.hidden = !photo;
    this.retake.hidden = !fromCamera;
    if (photo) {
      this.previewURL = URL.createObjectURL(photo.blob);
      this.img.hidden = false;
      this.img.onerror = () => {
        this.img.hidden = true;
        this.info.textContent += " · the browser cannot show this file as a picture";
      };
      this.img.src = this.previewURL;
      const kb = Math.max(1, Math.round(photo.blob.size / 1024));
      this.info.textContent = `${photo.name} · ${kb} KB`;
    } else {
      this.img.removeAttribute("src");
    }
    this.onChange(photo);
  }

  #fromFile() {
    const f = this.file.files && this.file.files[0];
    this.stopCamera();
    this.message.hidden = true;
    this.#set(f ? { blob: f, name: f.name } : null, false);
    this.file.value = "";
  }

  async startCamera() {
    this.message.hidden = true;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.message.textContent = window.isSecureContext
        ? "This browser cannot use a camera. Choose a file instead."
        : "The webcam needs the console to be opened over HTTPS (or on localhost). Choose a file instead.";
      this.message.hidden = false;
      return;
    }
    try {
      this.stopCamera();
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: "user" },
        audio: false,
      });
    } catch (err) {
      this.message.textContent = cameraMessage(err);
      this.message.hidden = false;
      return;
    }
    this.video.srcObject = this.stream;
    this.cameraBox.hidden = false;
    this.previewBox.hidden = true;
    await this.video.play().catch(() => {});
  }

  stopCamera() {
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    this.video.srcObject = null;
    this.cameraBox.hidden = true;
    if (this.photo) this.previewBox.hidden = false;
  }

  async capture() {
    const v = this.video;
    if (!v.videoWidth) {
      this.message.textContent = "The camera has not delivered a picture yet: try again in a second.";
      this.message.hidden = false;
      return;
    }
    const canvas = h("canvas", { width: v.videoWidth, height: v.videoHeight });
    canvas.getContext("2d").drawImage(v, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    this.stopCamera();
    const stamp = new Date().toISOString().slice(11, 19).replaceAll(":", "");
    this.#set({ blob, name: `webcam-${stamp}.jpg` }, true);
  }

  reset() {
    this.stopCamera();
    this.message.hidden = true;
    this.#set(null, false);
  }
}
