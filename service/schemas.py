"""Request options and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from service.auth import SCOPES
from service.collection_index import NAME_PATTERN as COLLECTION_PATTERN
from service.liveness.tokens import PATTERN as LIVENESS_TOKEN_PATTERN
from service.model_card import MeasuredThreshold, ModelCard, OrgCalibration
from service.pipeline.face import Face
from service.pipeline.pipeline import FaceSelection
from service.pipeline.quality import QualityFilter, QualityReport

PERSON_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _not_a_boolean(value: Any) -> Any:
    """JSON ``true`` is not the number 1 (pydantic's lax mode would read it so); form text such as
    ``"5"`` still converts, since the same options arrive as multipart fields."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not a boolean")
    return value


NotBool = BeforeValidator(_not_a_boolean)

FACE_INDEX = Field(
    None,
    ge=0,
    le=99,
    description="use this face: an index into the photo's faces as the response lists them (largest box "
    "first, ties broken by position: left edge, then top edge); default: the largest face",
)


def _face_box(value: Any) -> Any:
    """``"x1,y1,x2,y2"`` (a form field or JSON string) or a JSON array of four numbers."""
    if value is None:
        return None
    parts = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        parts = text.split(",")
    if not isinstance(parts, (list, tuple)) or len(parts) != 4 or any(isinstance(p, bool) for p in parts):
        raise ValueError("face_box is four numbers x1,y1,x2,y2 (the form faces[].box has)")
    try:
        box = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError("face_box is four numbers x1,y1,x2,y2 (the form faces[].box has)") from None
    if not all(abs(v) <= 1e6 for v in box) or not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError("face_box needs x2 > x1 and y2 > y1, in pixels (at most 1e6)")
    return box


FaceBoxOpt = Annotated[
    tuple[float, float, float, float] | SkipJsonSchema[None],
    BeforeValidator(_face_box),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\[?\s*-?[0-9.]+(\s*,\s*-?[0-9.]+){3}\s*\]?$"},
                {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
            ],
        }
    ),
]
FACE_BOX = Field(
    None,
    description="use the face whose detected box overlaps this box most: x1,y1,x2,y2 in the photo's pixels "
    "(after EXIF rotation), as faces[].box reports boxes; at least 0.3 intersection over union "
    "(face_box_no_match otherwise); not with face_index (face_choice_conflict)",
)


# ---- request options (the same fields arrive as multipart form fields or as JSON) ----

LIVENESS_TOKEN = Field(
    None,
    pattern=LIVENESS_TOKEN_PATTERN,
    description="a token from a passed POST /liveness/check (single use): the photo's face must be the live "
    "face it was issued for; required for keys of the scopes FACEGATE_LIVENESS_REQUIRED_SCOPES lists",
)


def _name_list(value: Any) -> Any:
    """``"a,b"`` (a form field) is the list ``["a", "b"]``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return value


CollectionName = Annotated[str, Field(pattern=COLLECTION_PATTERN)]


class CollectionOptions(_Strict):
    """Which collection(s) to search (service.collection_index): ``collection`` names one,
    ``collections`` several (a JSON array, or comma-separated). Neither: the key's bound
    collection, else ``default``."""

    collection: CollectionName | None = Field(None, description="the collection to search")
    collections: Annotated[list[CollectionName], BeforeValidator(_name_list)] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="collections to search together (comma-separated in a form)",
    )

    @model_validator(mode="after")
    def _one_way(self) -> CollectionOptions:
        if self.collection is not None and self.collections is not None:
            raise ValueError("send collection or collections, not both")
        return self

    def named(self) -> list[str] | None:
        """The collections the request names (each once, in order), or None."""
        if self.collection is not None:
            return [self.collection]
        return None if self.collections is None else list(dict.fromkeys(self.collections))


class EnrollOptions(CollectionOptions):
    name: str = Field(min_length=1, max_length=200)
    person_id: str | None = Field(
        None, pattern=PERSON_ID_PATTERN, description="client key; generated if absent"
    )
    face_selection: Literal["single", "largest"] = Field("single", description="single (default) or largest")
    quality_filter: QualityFilter = Field(
        "medium",
        description="how strict the enrolment quality gate is: none (no gate), low, medium (default) or "
        "high; the README lists what each level refuses and its failure-to-enrol rate on LFW",
    )
    allow_duplicate: bool = Field(
        False, description="enrol even when the face matches someone already enrolled (1:N threshold)"
    )
    replace: bool = False
    face_index: Annotated[int | None, NotBool] = FACE_INDEX
    face_box: FaceBoxOpt = FACE_BOX


class VerifyOptions(_Strict):
    person_id: str = Field(pattern=PERSON_ID_PATTERN)
    liveness_token: str | SkipJsonSchema[None] = LIVENESS_TOKEN
    threshold: Annotated[float | None, NotBool] = Field(
        None, gt=0, lt=1, description="score threshold overriding the default"
    )
    face_index: Annotated[int | None, NotBool] = FACE_INDEX
    face_box: FaceBoxOpt = FACE_BOX


class IdentifyOptions(CollectionOptions):
    top_k: Annotated[int | None, NotBool] = Field(None, ge=1, le=100)
    liveness_token: str | SkipJsonSchema[None] = LIVENESS_TOKEN
    face_selection: FaceSelection = FaceSelection.largest
    face_index: Annotated[int | None, NotBool] = Field(
        None,
        ge=0,
        le=99,
        description="identify this face only (an index into the response's faces, largest box first, ties "
        "by position); overrides face_selection",
    )
    face_box: FaceBoxOpt = FACE_BOX


class CompareOptions(_Strict):
    threshold: Annotated[float | None, NotBool] = Field(
        None, gt=0, lt=1, description="score threshold overriding /verify's (only an admin key may lower it)"
    )
    face_index_a: Annotated[int | None, NotBool] = FACE_INDEX
    face_index_b: Annotated[int | None, NotBool] = FACE_INDEX
    face_box_a: FaceBoxOpt = FACE_BOX
    face_box_b: FaceBoxOpt = FACE_BOX


class ImageJSON(_Strict):
    image_base64: str = Field(min_length=1, description="the photo, base64 (a data: URL prefix is accepted)")


class EnrollJSON(ImageJSON, EnrollOptions):
    pass


def _frame(n: int) -> Any:
    return Field(
        None, min_length=1, description=f"frame {n} of a burst, base64 (optional; image_base64 is frame 1)"
    )


class BurstJSON(ImageJSON):
    """A burst: frames 2 to 5 of one moment beside ``image_base64``; the best-quality face decides."""

    image_2_base64: str | SkipJsonSchema[None] = _frame(2)
    image_3_base64: str | SkipJsonSchema[None] = _frame(3)
    image_4_base64: str | SkipJsonSchema[None] = _frame(4)
    image_5_base64: str | SkipJsonSchema[None] = _frame(5)


class VerifyJSON(BurstJSON, VerifyOptions):
    pass


class IdentifyJSON(BurstJSON, IdentifyOptions):
    pass


class CompareJSON(CompareOptions):
    image_a_base64: str = Field(
        min_length=1, description="the first photo, base64 (a data: URL prefix is accepted)"
    )
    image_b_base64: str = Field(min_length=1, description="the second photo, base64")


# ---- responses ----


class FaceOut(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in the photo's pixels (after EXIF rotation)")
    score: float = Field(description="detector confidence")
    landmarks: list[list[float]]

    @classmethod
    def of(cls, face: Face) -> FaceOut:
        return cls.model_validate(face.to_dict())


class QualityOut(BaseModel):
    eye_distance: float
    sharpness: float
    yaw: float
    detection_score: float

    @classmethod
    def of(cls, report: QualityReport) -> QualityOut:
        return cls.model_validate(report.to_dict())


class PersonOut(BaseModel):
    person_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    model_versions: list[str] = []
    status: Literal["active", "suspended"] = "active"
    suspended_at: datetime | None = None
    expires_at: datetime | None = Field(None, description="from then on the person is not matched")
    matchable: bool = Field(
        True, description="active and not expired: /verify and /identify may match the person now"
    )
    collections: list[str] = Field(["default"], description="the collections the person is in")


def _aware(value: Any) -> Any:
    """A time in UTC; one without a zone is UTC already. A time that leaves the calendar once in
    UTC (year 1 east of Greenwich, year 9999 west of it) becomes its first or last moment."""
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:
            return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=timezone.utc)
    return value


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?")


def _iso_text(value: Any) -> Any:
    """ISO 8601 date and time text only: pydantic would also read ``0.5`` as a Unix time."""
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value.strip()):
        raise ValueError("an ISO 8601 date and time is expected, e.g. 2026-12-31T18:00:00Z")
    return value


UtcTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_aware)]


class PersonUpdate(_Strict):
    """``PATCH /people/{id}``: the fields sent are changed, the others kept."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    status: Literal["active", "suspended"] | SkipJsonSchema[None] = Field(
        None, description="suspended: never matched, verified or counted as a duplicate; active: again"
    )
    expires_at: UtcTime | None = Field(
        None,
        description="ISO 8601; from then on the person is treated as suspended (a zone-less time is UTC); "
        "null clears it",
    )

    @model_validator(mode="after")
    def _something(self) -> PersonUpdate:
        if not self.model_fields_set & {"status", "expires_at"}:
            raise ValueError("send status and/or expires_at")
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("status must be active or suspended")
        return self


FACES_FOUND = Field(description="how many faces the photo holds")
FACES = Field(
    description="every face found, largest box first, ties broken by position (left edge, then top edge): "
    "the order face_index counts in"
)
USED_INDEX = Field(description="the face used: its index in faces (face is faces[face_index])")
FRAMES = Field(description="how many photos (frames of a burst) were sent: 1 to 5")
FRAME = Field(
    description="the frame that decided (1: image, 2: image_2, ...): the one whose largest face has the best "
    "quality; faces, faces_found and face_index are that frame's"
)


class EnrollOut(BaseModel):
    person: PersonOut
    face: FaceOut
    quality: QualityOut
    model_version: str
    replaced: bool
    faces_found: int = FACES_FOUND
    face_index: int = USED_INDEX
    faces: list[FaceOut] = FACES


class VerifyOut(BaseModel):
    match: bool
    score: float
    threshold: float
    similarity: float
    model_version: str
    face: FaceOut
    threshold_basis: str
    faces_found: int = FACES_FOUND
    face_index: int = USED_INDEX
    faces: list[FaceOut] = FACES
    frames: int = FRAMES
    frame: int = FRAME


class ComparedPhotoOut(BaseModel):
    face: FaceOut = Field(description="the face compared (faces[face_index])")
    faces_found: int = FACES_FOUND
    face_index: int = USED_INDEX
    faces: list[FaceOut] = FACES


class CompareOut(BaseModel):
    match: bool = Field(description="score >= threshold: the two faces are the same person")
    score: float
    similarity: float
    threshold: float
    threshold_basis: str
    model_version: str
    a: ComparedPhotoOut
    b: ComparedPhotoOut


class CandidateOut(BaseModel):
    person_id: str
    name: str
    score: float
    similarity: float


class IdentifyFaceOut(BaseModel):
    result: str = Field(
        description="match, unknown or ambiguous; not_checked for a face that face_selection or face_index "
        "left out (person null, candidates empty)"
    )
    person: CandidateOut | None
    score: float | None
    candidates: list[CandidateOut]
    face: FaceOut
    face_index: int = Field(description="the face's index in faces (largest box first, ties by position)")


class IdentifyOut(BaseModel):
    result: str = Field(
        description="the result for faces[face_index] (the largest face unless face_index chose another): "
        "match, unknown or ambiguous"
    )
    person: CandidateOut | None
    score: float | None
    threshold: float
    threshold_similarity: float
    threshold_basis: str
    gallery_size: int
    collections: list[str] = Field(
        ["default"], description="the collections searched (gallery_size counts them)"
    )
    promised_fpir: float | None = Field(
        None,
        description="the false-positive identification rate the model's calibration supports over "
        "gallery_size people: FACEGATE_TARGET_FPIR, or more when the gallery is past what it measured",
    )
    model_version: str
    candidates: list[CandidateOut]
    face: FaceOut
    faces: list[IdentifyFaceOut] = Field(
        description="every face found, largest box first, ties broken by position (left edge, then top "
        "edge): the order face_index counts in; faces not identified are not_checked"
    )
    faces_found: int = FACES_FOUND
    face_index: int = Field(description="the face the top-level result is about: its index in faces")
    frames: int = FRAMES
    frame: int = FRAME


class CollectionOut(BaseModel):
    name: str
    people: int = Field(description="people stored in the collection")
    gallery_size: int = Field(
        description="people /identify searches in it now (with an embedding, matchable): its 1:N N"
    )


class PeoplePage(BaseModel):
    items: list[PersonOut]
    total: int
    offset: int
    limit: int


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    collection: str | None = Field(None, description="bound: the key searches only this collection")


class CreatedKeyOut(KeyOut):
    key: str = Field(description="the key itself, shown once")


class KeyCreate(_Strict):
    name: str = Field(min_length=1, max_length=100)
    collection: CollectionName | None = Field(
        None,
        description="bind the key to this collection: it identifies, enrols and edits memberships only there "
        "(null or absent: unbound)",
    )
    scopes: list[str] = Field(
        min_length=1,
        max_length=len(SCOPES),
        description="each scope at most once",
        json_schema_extra={
            "uniqueItems": True,
            "items": {"type": "string", "enum": [s for s in sorted(SCOPES)]},
        },
    )

    @field_validator("scopes")
    @classmethod
    def _each_once(cls, scopes: list[str]) -> list[str]:
        repeated = sorted({s for s in scopes if scopes.count(s) > 1})
        if repeated:
            raise ValueError(f"a scope may be listed once: {', '.join(repeated)} repeated")
        return scopes


class WhoAmI(BaseModel):
    id: int = Field(description="the key's id, as GET /keys lists it (a key cannot revoke itself)")
    name: str
    scopes: list[str]


# ---- responses of the system, admin and export routes (every route declares its body) ----


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    database: bool
    model: bool
    index: bool = Field(
        description="the index is in step with the database by counts and change-log position "
        "(the full comparison: GET /admin/consistency)"
    )


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: ReadyChecks
    model_version: str


class ConsistencyOut(BaseModel):
    """The last full comparison of the index with the database (GET /admin/consistency)."""

    consistent: bool = Field(description="the index holds exactly the stored embeddings of the version")
    model_version: str
    database: int = Field(description="embeddings stored for the model version")
    indexed: int = Field(description="embeddings in the index")
    stale: bool = Field(description="the gallery knows its index is out of date (rebuilt at the next write)")
    missing: int = Field(description="stored embeddings the index lacks")
    extra: int = Field(description="indexed embeddings no longer stored")
    misattributed: int = Field(description="embeddings indexed under another person")
    sample_missing: list[int] = Field(description="up to 20 missing embedding ids")
    sample_extra: list[int] = Field(description="up to 20 extra embedding ids")
    sample_misattributed: list[int] = Field(description="up to 20 misattributed embedding ids")
    checked_at: datetime = Field(description="when the comparison ran (UTC)")
    seconds: float = Field(description="how long it took")


class OperatingPoint(BaseModel):
    """A threshold the service decides with now, and why."""

    far: float | None = Field(
        description="per-comparison false-accept rate it is chosen for (None: set explicitly)"
    )
    similarity: float = Field(description="the cosine similarity threshold")
    score: float = Field(description="the score threshold")
    basis: str = Field(description="why this threshold, in words (as decisions state it)")


class IdentifyOperatingPoint(OperatingPoint):
    fpir: float = Field(description="the target false-positive identification rate (FACEGATE_TARGET_FPIR)")
    gallery_size: int = Field(description="people /identify searches now (far = fpir / gallery_size)")


class OperatingPoints(BaseModel):
    verify: OperatingPoint = Field(description="the threshold /verify uses without a client threshold")
    identify: IdentifyOperatingPoint = Field(
        description="the threshold /identify uses for the current gallery"
    )


class ModelInUse(ModelCard):
    """The model card in use, with the onnxruntime execution providers running it."""

    execution_providers: list[str]
    operating_points: OperatingPoints | None = Field(
        None, description="the thresholds /verify and /identify decide with now"
    )
    figures: list[str] = Field(
        [], description="figure files of the model version, served by GET /model/figures/{name}"
    )


class ModelVersionOut(BaseModel):
    version: str
    name: str
    folder: str = Field(description="the version's folder inside the models folder")
    sha256: str
    published_at: datetime | None
    parent_version: str | None
    input_size: list[int]
    embedding_dim: int
    active: bool


class SwapOut(BaseModel):
    """A model swap: the gallery re-embedded for ``version`` while ``previous`` keeps answering."""

    version: str
    previous: str
    state: Literal["running", "done", "failed"]
    step: str
    started_at: datetime
    finished_at: datetime | None
    embedded: int
    gallery_size: int
    error: str | None


class ModelVersions(BaseModel):
    active: str
    previous: str | None
    versions: list[ModelVersionOut]
    swap: SwapOut | None = Field(description="the last swap since the service started")


class ThresholdAtFar(MeasuredThreshold):
    target_far: float


class SkippedPhoto(BaseModel):
    photo: str
    reason: str = Field(description="the problem code that refused it (no_face, corrupt_image, ...)")


class CalibrationReport(OrgCalibration):
    """What /admin/calibrate measured and published (the new card keeps all but the last three)."""

    thresholds: list[ThresholdAtFar]
    skipped: list[SkippedPhoto]
    activation: SwapOut | None = Field(None, description="the swap started when activate=true")


class ExportedPerson(BaseModel):
    person_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    status: Literal["active", "suspended"] = "active"
    suspended_at: datetime | None = None
    expires_at: datetime | None = None
    collections: list[str] = ["default"]


class ExportedCrop(BaseModel):
    png_base64: str
    width: int
    height: int
    kind: Literal["chip", "canvas"]
    meta: dict[str, Any]
    photo_sha256: str
    created_at: datetime


class ExportedEmbedding(BaseModel):
    id: int
    model_version: str
    vector: list[float]
    created_at: datetime


class ExportedAudit(BaseModel):
    at: datetime
    action: str
    key_id: int | None
    key_name: str
    result: str
    score: float | None
    model_version: str | None
    detail: dict[str, Any]


class ExportedChange(BaseModel):
    at: datetime
    op: Literal["upsert", "delete"]


class PersonExport(BaseModel):
    """Everything stored about a person."""

    person: ExportedPerson
    reference_crop: ExportedCrop | None
    embeddings: list[ExportedEmbedding]
    audit: list[ExportedAudit]
    changes: list[ExportedChange]


class AuditRow(BaseModel):
    """One access-log row: who (the key) did what to whom, when, with which result; no face."""

    id: int
    at: datetime
    action: str
    key_id: int | None = Field(
        description="the API key's id; null for the command line and the service itself"
    )
    key_name: str
    person_id: str | None
    result: str = Field(description="ok, match, no_match, unknown, ambiguous, suspended, expired, ...")
    score: float | None
    model_version: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditRow] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as cursor for the next (older) page; null: no more")
    limit: int


# ---- liveness (service/liveness/) ----


class LivenessChallengeOut(BaseModel):
    challenge_id: str = Field(description="send it with the frames to POST /liveness/check (once)")
    steps: list[str] = Field(
        description="the poses to reach, in order: turn_left, turn_right (the person's own left and right), "
        "look_up, look_down, come_closer"
    )
    instructions: list[str] = Field(description="each step in words, to show the person")
    expires_at: datetime


class LivenessStepOut(BaseModel):
    step: str
    passed: bool
    measured: float = Field(
        description="how far the step's measure moved from the first frame (yaw and pitch: a difference; "
        "come_closer: a size ratio); the best reached when the step did not pass"
    )
    frame: int | None = Field(description="the frame (1 = first) where the step was reached")


class LivenessReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: str = Field(
        description="step_not_reached, flat_motion, no_face, multiple_faces, different_person, frames_copied"
    )
    message: str


class LivenessCheckOut(BaseModel):
    live: bool
    steps: list[LivenessStepOut]
    reasons: list[LivenessReason] = Field(description="why the check failed, in words; empty when live")
    score: float = Field(
        description="the landmarks' misfit to a flat picture moved in front of the camera, in units of the "
        "limit: at least 1 is needed (besides every other condition)"
    )
    frames: int
    model_version: str
    liveness_token: str | None = Field(
        description="when live: a single-use token for /verify or /identify (liveness_token), bound to this face"
    )
    token_expires_in: float | None = Field(description="seconds the token stays valid")
