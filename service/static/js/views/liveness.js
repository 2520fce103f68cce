// Liveness (experimental): the webcam follows a random challenge of head poses, the frames go to
// POST /liveness/check, and the outcome is shown in words with a single-use token.
import { request } from "../api.js";
import { busy, h, num } from "../dom.js";
import { badge, facts, resultArea, reveal, showError } from "./common.js";

const FRAME_MS = 330; // about 3 frames a second
const START_MS = 1200; // looking at the camera first: the starting pose
const STEP_MS = 2400;
const MAX_FRAMES = 32; // service/liveness/check.py
const WIDTH = 640; // frames are sent at most this wide

const ARROWS = { turn_left: "⟵", turn_right: "⟶", look_up: "↑", look_down: "↓", come_closer: "⤢" };

// the reasons of a failed check, in the console's words (service/liveness/)
const REASONS = {
  step_not_reached: (r) => `The step “${words(r.step)}” was not seen: turn further or hold the pose a little longer.`,
  flat_motion: () => "The face moved like a flat picture (a photo or a screen), not like a head.",
  no_face: (r) => `No face was found in frame ${r.frame}: keep your face inside the oval.`,
  multiple_faces: (r) => `Frame ${r.frame} shows more than one face: only one person may be in view.`,
  different_person: () => "The frames do not all show the same person.",
  frames_copied: (r) => `Frames ${r.frames.join(" and ")} are the same picture.`,
};

function words(step) {
  return step.replaceAll("_", " ");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function livenessView() {
  const video = h("video", { class: "camera", autoplay: true, playsinline: true, muted: true });
  video.muted = true;
  const arrow = h("div", { class: "liveness-arrow", "aria-hidden": "true" });
  const prompt = h("p", { class: "guide-hint", role: "status" }, "Put your face inside the oval, then start.");
  const stage = h("div", { class: "camera-stage" }, video, h("div", { class: "face-guide", "aria-hidden": "true" }), arrow, prompt);
  const progress = h("progress", { max: "1", value: "0", class: "liveness-progress" });
  const start = h("button", { type: "button" }, "Start the liveness check");
  const out = resultArea();
  let stream = null;

  const stop = () => {
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
    video.srcObject = null;
  };

  const say = (text, step = null) => {
    prompt.textContent = text;
    arrow.textContent = step ? ARROWS[step] || "" : "";
  };

  start.addEventListener("click", () =>
    busy(start, "Checking…", async () => {
      out.replaceChildren();
      try {
        if (!navigator.mediaDevices?.getUserMedia) {
          throw new Error(window.isSecureContext ? "This browser cannot use a camera." : "The webcam needs HTTPS (or localhost).");
        }
        stream = stream || (await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: "user" }, audio: false }));
        video.srcObject = stream;
        await video.play().catch(() => {});
        const challenge = await (await request("/liveness/challenge", { method: "POST" })).json();
        const frames = await follow(video, challenge, say, progress);
        say("Checking the frames…");
        const form = new FormData();
        form.append("challenge_id", challenge.challenge_id);
        frames.forEach((blob, i) => form.append("frames", blob, `frame-${i + 1}.jpg`));
        const res = await (await request("/liveness/check", { method: "POST", body: form })).json();
        say(res.live ? "Done: a live face followed the steps." : "Done: not confirmed as live.");
        showOutcome(out, res, challenge);
      } catch (err) {
        say("Put your face inside the oval, then start.");
        if (err.problem) await showError(out, err, null);
        else out.replaceChildren(h("div", { class: "alert error", role: "alert" }, h("strong", { class: "alert-title" }, err.message)));
        reveal(out);
      } finally {
        progress.value = 0;
      }
    }),
  );

  return {
    title: "Liveness check (experimental)",
    el: h(
      "div",
      { class: "view-body" },
      h(
        "div",
        { class: "card" },
        h("p", { class: "hint" }, "The service asks for a few head movements in a random order. Follow each instruction as it appears: the frames are checked for one live, three-dimensional face. Nothing is stored but the result."),
        stage,
        progress,
        h("div", { class: "row" }, start),
      ),
      out,
    ),
    hide: stop,
  };
}

/** Captures frames while the person is guided through the challenge's steps. */
async function follow(video, challenge, say, progress) {
  const frames = [];
  const total = START_MS + STEP_MS * challenge.steps.length;
  const began = performance.now();
  const phases = [["Look straight at the camera", null, START_MS]];
  challenge.steps.forEach((step, i) => phases.push([`${i + 1} of ${challenge.steps.length}: ${challenge.instructions[i]}`, step, STEP_MS]));
  for (const [text, step, ms] of phases) {
    say(text, step);
    const end = performance.now() + ms;
    while (performance.now() < end && frames.length < MAX_FRAMES) {
      const blob = await grab(video);
      if (blob) frames.push(blob);
      progress.value = Math.min(1, (performance.now() - began) / total);
      await sleep(FRAME_MS);
    }
  }
  return frames;
}

async function grab(video) {
  if (!video.videoWidth) return null;
  const scale = Math.min(1, WIDTH / video.videoWidth);
  const canvas = h("canvas", { width: Math.round(video.videoWidth * scale), height: Math.round(video.videoHeight * scale) });
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height); // not mirrored
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
}

function showOutcome(out, res, challenge) {
  const tone = res.live ? "ok" : "bad";
  const verdict = res.live
    ? "A live face of one person followed every step. The token below lets one verification or identification of this face go through."
    : "Not confirmed as live.";
  const reasons = res.reasons.map((r) => h("li", {}, (REASONS[r.reason] || (() => r.message))(r)));
  out.replaceChildren(
    h("div", { class: `alert ${tone}`, role: "status" }, badge(res.live ? "Live" : "Not live", tone), " ", verdict),
    reasons.length ? h("ul", { class: "liveness-reasons" }, reasons) : "",
    h(
      "ol",
      { class: "liveness-steps" },
      res.steps.map((s, i) => h("li", { class: s.passed ? "ok" : "bad" }, `${challenge.instructions[i]}: ${s.passed ? "seen" : "not seen"} (${num(s.measured, 2)})`)),
    ),
    facts([
      ["Frames sent", String(res.frames)],
      ["Depth score", `${num(res.score, 2)} (at least 1 needed)`],
      ["Model", res.model_version],
      ["Liveness token", res.liveness_token ? `${res.liveness_token} (single use, ${num(res.token_expires_in, 0)} s)` : ""],
    ]),
  );
  out.dataset.checked = String(Number(out.dataset.checked || 0) + 1); // a new answer (the tests wait on it)
  reveal(out);
}
