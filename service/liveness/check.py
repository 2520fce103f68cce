"""POST /liveness/check behind the route: frames -> faces -> the conditions -> a token.

``live`` is true only when (1) every frame shows exactly one face; (2) the faces are one person:
every frame's embedding is tied to the most frontal frame's by matches at /verify's threshold
(strict: FACEGATE_TARGET_FAR) with it or with the frames near it (``unlinked``); (3) no two
frames are copies, the same pixels (``copies``); (4) the steps were reached in order and the
landmarks' motion is not a flat picture's (``sequence.judge``). A live check issues
a single-use token carrying the most frontal frame's embedding (``tokens``). The check is audited
(action ``liveness``), with no landmark, image or embedding in the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.decisions import verify_threshold
from service.errors import MultipleFaces, NoFace
from service.gallery import audit
from service.gallery.audit import Caller
from service.liveness.challenges import Challenge
from service.liveness.copies import copied_pairs, fingerprint
from service.liveness.pose import pose_of
from service.liveness.sequence import Judgement, judge
from service.liveness.tokens import TokenStore
from service.pipeline.pipeline import EmbeddedFace, FaceSelection, Timings
from service.recognition import Recognizer

MIN_FRAMES = 3
MAX_FRAMES = 32
MAX_FRAME_BYTES = 2 * 1024 * 1024


@dataclass
class CheckResult:
    live: bool
    judgement: Judgement
    reasons: list[dict]
    score: float
    frames: int
    model_version: str
    token: str | None = None
    token_ttl_s: float | None = None


def _faces(recognizer: Recognizer, frames: list[bytes]) -> tuple[list[EmbeddedFace | None], list, list[dict]]:
    faces: list[EmbeddedFace | None] = []
    thumbs = []
    reasons: list[dict] = []
    for n, data in enumerate(frames, 1):
        try:
            photo = recognizer.pipeline.process(data, FaceSelection.single, Timings())
        except NoFace:
            faces.append(None)
            reasons.append({"reason": "no_face", "frame": n, "message": f"no face was found in frame {n}"})
            continue
        except MultipleFaces as exc:
            faces.append(None)
            count = len(exc.extra.get("faces", [])) or 2
            reasons.append(
                {"reason": "multiple_faces", "frame": n, "message": f"frame {n} shows {count} faces, not one"}
            )
            continue
        faces.append(photo.faces[0])
        if photo.rgb is not None:
            thumbs.append(fingerprint(photo.rgb))
    return faces, thumbs, reasons


def unlinked(embeddings: list[np.ndarray], reference: int, similarity: float) -> list[int]:
    """The frames (1 = first) whose face is not tied to the reference frame's by a chain of
    matches at ``similarity``: with the reference itself, or with a frame at most two before or
    after (so that one odd frame does not cut the chain).

    A head turned 30 degrees can fall under the threshold against the frontal face while matching
    its neighbours easily; a face swapped in matches neither its neighbours nor the reference."""
    linked = {reference}
    changed = True
    while changed:
        changed = False
        for i, e in enumerate(embeddings):
            if i in linked:
                continue
            near = [j for j in (reference, i - 2, i - 1, i + 1, i + 2) if j in linked]
            if any(float(np.dot(e, embeddings[j])) >= similarity for j in near):
                linked.add(i)
                changed = True
    return [i + 1 for i in range(len(embeddings)) if i not in linked]


def run_check(
    recognizer: Recognizer, frames: list[bytes], challenge: Challenge, tokens: TokenStore, caller: Caller
) -> CheckResult:
    faces, thumbs, reasons = _faces(recognizer, frames)
    for a, b in copied_pairs(thumbs):
        reasons.append(
            {
                "reason": "frames_copied",
                "frames": [a, b],
                "message": f"frames {a} and {b} are copies of each other",
            }
        )
    found = [f for f in faces if f is not None]
    judgement = judge([f.face.landmarks for f in found], challenge.steps)
    # with fewer than two faces there is no motion to judge: only the steps are reported missed
    reasons.extend(r for r in judgement.reasons if len(found) >= 2 or r["reason"] != "flat_motion")
    reference: EmbeddedFace | None = None
    if found:
        reference = min(found, key=lambda f: abs(pose_of(f.face.landmarks).yaw))
        threshold = verify_threshold(
            recognizer.card.calibration, recognizer.settings.target_far, recognizer.settings.verify_threshold
        )
        strangers = unlinked([f.embedding for f in found], found.index(reference), threshold.similarity)
        if strangers:
            reasons.append(
                {
                    "reason": "different_person",
                    "message": f"the face of frame(s) {', '.join(map(str, strangers))} is not the same person's as "
                    f"the others (none of their neighbours or the most frontal face matches at similarity "
                    f"{threshold.similarity:.3f})",
                    "limit": round(threshold.similarity, 4),
                }
            )
    live = len(found) >= 2 and judgement.live and not reasons
    score = round(judgement.residual / judgement.planar_limit, 4)
    result = CheckResult(live, judgement, reasons, score, len(frames), recognizer.version)
    if live and reference is not None:
        result.token, result.token_ttl_s = tokens.issue(
            reference.embedding, recognizer.version, challenge.id, score, caller
        )
    audit.record(
        recognizer.gallery.session_factory,
        audit.row(
            caller,
            "liveness",
            result="live" if live else "not_live",
            score=score,
            model_version=recognizer.version,
            detail={
                "challenge_id": challenge.id,
                "steps": [
                    {"step": s.step, "passed": s.passed, "measured": s.measured} for s in judgement.steps
                ],
                "residual": round(judgement.residual, 4),
                "reasons": sorted({r["reason"] for r in reasons}),
                "frames": len(frames),
                "token_issued": result.token is not None,
            },
        ),
    )
    return result
