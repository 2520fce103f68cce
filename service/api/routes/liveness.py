"""POST /liveness/challenge and /liveness/check (service/liveness/)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from service.api.deps import RecognizerDep, StateDep, VerifyCaller
from service.api.intake import _decode_base64
from service.api.problems import problem_responses
from service.api.strict_body import loads_json
from service.errors import ImageTooLarge, InvalidRequest
from service.liveness.challenges import ID_PATTERN, ChallengeStore
from service.liveness.check import MAX_FRAME_BYTES, MAX_FRAMES, MIN_FRAMES, CheckResult, run_check
from service.liveness.errors import TooManyFrames
from service.liveness.pose import STEPS
from service.liveness.tokens import TokenStore
from service.schemas import LivenessChallengeOut, LivenessCheckOut, LivenessReason, LivenessStepOut

router = APIRouter(prefix="/liveness", tags=["liveness"])
_ID = re.compile(ID_PATTERN)

CHECK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["challenge_id", "frames"],
                    "properties": {
                        "challenge_id": {"type": "string", "pattern": ID_PATTERN},
                        "frames": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": MIN_FRAMES,
                            "maxItems": MAX_FRAMES,
                            "description": "the frames in the order they were taken (repeat the field)",
                        },
                    },
                    "additionalProperties": False,
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["challenge_id", "frames_base64"],
                    "properties": {
                        "challenge_id": {"type": "string", "pattern": ID_PATTERN},
                        "frames_base64": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1},
                            "minItems": MIN_FRAMES,
                            "maxItems": MAX_FRAMES,
                        },
                    },
                    "additionalProperties": False,
                }
            },
        },
    }
}


@router.post("/challenge", response_model=LivenessChallengeOut, responses=problem_responses(401, 403, 413))
def challenge(state: StateDep, caller: VerifyCaller) -> LivenessChallengeOut:
    """A random sequence of 2 to 4 head poses to follow, for one POST /liveness/check by this key
    before `expires_at` (FACEGATE_LIVENESS_CHALLENGE_TTL)."""
    c = ChallengeStore(state.sessions, state.settings.liveness_challenge_ttl).issue(caller)
    return LivenessChallengeOut(
        challenge_id=c.id,
        steps=c.steps,
        instructions=[STEPS[s].instruction for s in c.steps],
        expires_at=c.expires_at,
    )


@router.post(
    "/check",
    response_model=LivenessCheckOut,
    openapi_extra=CHECK_BODY,
    responses=problem_responses(
        401,
        403,
        404,
        408,
        409,
        413,
        415,
        422,
        503,
        s404="no such challenge for this key (challenge_not_found)",
        s409="the challenge was used already (challenge_used) or expired (challenge_expired)",
    ),
)
async def check(
    request: Request, state: StateDep, recognizer: RecognizerDep, caller: VerifyCaller
) -> LivenessCheckOut:
    """Did a live face of one person follow the challenge? The frames in order (multipart: the
    `frames` field repeated; JSON: `frames_base64`). When live, a single-use `liveness_token` for
    /verify or /identify (FACEGATE_LIVENESS_TOKEN_TTL)."""
    challenge_id, frames = await _read(request)
    found = ChallengeStore(state.sessions, state.settings.liveness_challenge_ttl).take(challenge_id, caller)
    tokens = TokenStore(state.sessions, state.settings.liveness_token_ttl)
    result = await run_in_threadpool(run_check, recognizer, frames, found, tokens, caller)
    return _out(result)


def _out(r: CheckResult) -> LivenessCheckOut:
    steps = r.judgement.steps
    return LivenessCheckOut(
        live=r.live,
        steps=[
            LivenessStepOut(step=s.step, passed=s.passed, measured=s.measured, frame=s.frame) for s in steps
        ],
        reasons=[LivenessReason(**reason) for reason in r.reasons],
        score=r.score,
        frames=r.frames,
        model_version=r.model_version,
        liveness_token=r.token,
        token_expires_in=r.token_ttl_s,
    )


async def _read(request: Request) -> tuple[str, list[bytes]]:
    """The challenge id and the frames, bounded in count and size, before the challenge is used."""
    ctype = request.headers.get("content-type", "")
    frames: list[bytes] = []
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=MAX_FRAMES + 1, max_fields=MAX_FRAMES + 4)
        except Exception as exc:  # malformed multipart bodies raise several parser errors
            raise InvalidRequest(f"the multipart body could not be parsed: {exc}") from exc
        ids = form.getlist("challenge_id")
        extra = sorted(set(form.keys()) - {"challenge_id", "frames"})
        if extra:
            raise InvalidRequest(f"unexpected fields {extra}: send challenge_id and the frames", fields=extra)
        for upload in form.getlist("frames"):
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("each 'frames' field must be a file")
            frames.append(await upload.read())
        challenge_id = ids[0] if len(ids) == 1 and isinstance(ids[0], str) else None
    elif ctype.startswith("application/json"):
        payload = loads_json(await request.body())
        if not isinstance(payload, dict) or set(payload) - {"challenge_id", "frames_base64"}:
            raise InvalidRequest("the JSON body must be an object with challenge_id and frames_base64")
        raw = payload.get("frames_base64")
        if not isinstance(raw, list) or not all(isinstance(f, str) and f for f in raw):
            raise InvalidRequest("frames_base64 must be a list of base64 strings")
        if len(raw) > MAX_FRAMES:
            raise TooManyFrames(f"{len(raw)} frames: at most {MAX_FRAMES}", max_frames=MAX_FRAMES)
        frames = [_decode_base64(f, "frames_base64") for f in raw]
        challenge_id = payload.get("challenge_id") if isinstance(payload.get("challenge_id"), str) else None
    else:
        raise InvalidRequest(
            "send multipart/form-data (challenge_id and the frames field repeated) or JSON "
            "(challenge_id, frames_base64)",
            content_type=ctype,
        )
    if challenge_id is None or not _ID.match(challenge_id):
        raise InvalidRequest(
            "challenge_id is missing or malformed: use the one POST /liveness/challenge gave"
        )
    if not MIN_FRAMES <= len(frames) <= MAX_FRAMES:
        raise TooManyFrames(
            f"{len(frames)} frames: send {MIN_FRAMES} to {MAX_FRAMES}, in the order they were taken",
            min_frames=MIN_FRAMES,
            max_frames=MAX_FRAMES,
        )
    for n, data in enumerate(frames, 1):
        if not data:
            raise InvalidRequest(f"frame {n} is empty")
        if len(data) > MAX_FRAME_BYTES:
            raise ImageTooLarge(
                f"frame {n} is {len(data)} bytes, the limit is {MAX_FRAME_BYTES}", max_bytes=MAX_FRAME_BYTES
            )
    return challenge_id, frames
