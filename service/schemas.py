"""Request options and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from service.auth import SCOPES
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


# ---- request options (the same fields arrive as multipart form fields or as JSON) ----


class EnrollOptions(_Strict):
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


class VerifyOptions(_Strict):
    person_id: str = Field(pattern=PERSON_ID_PATTERN)
    threshold: Annotated[float | None, NotBool] = Field(
        None, gt=0, lt=1, description="score threshold overriding the default"
    )


class IdentifyOptions(_Strict):
    top_k: Annotated[int | None, NotBool] = Field(None, ge=1, le=100)
    face_selection: FaceSelection = FaceSelection.largest


class ImageJSON(_Strict):
    image_base64: str = Field(min_length=1, description="the photo, base64 (a data: URL prefix is accepted)")


class EnrollJSON(ImageJSON, EnrollOptions):
    pass


class VerifyJSON(ImageJSON, VerifyOptions):
    pass


class IdentifyJSON(ImageJSON, IdentifyOptions):
    pass


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


class EnrollOut(BaseModel):
    person: PersonOut
    face: FaceOut
    quality: QualityOut
    model_version: str
    replaced: bool


class VerifyOut(BaseModel):
    match: bool
    score: float
    threshold: float
    similarity: float
    model_version: str
    face: FaceOut
    threshold_basis: str


class CandidateOut(BaseModel):
    person_id: str
    name: str
    score: float
    similarity: float


class IdentifyFaceOut(BaseModel):
    result: str = Field(description="match, unknown or ambiguous")
    person: CandidateOut | None
    score: float | None
    candidates: list[CandidateOut]
    face: FaceOut


class IdentifyOut(BaseModel):
    result: str = Field(description="the largest face's result: match, unknown or ambiguous")
    person: CandidateOut | None
    score: float | None
    threshold: float
    threshold_similarity: float
    threshold_basis: str
    gallery_size: int
    model_version: str
    candidates: list[CandidateOut]
    face: FaceOut
    faces: list[IdentifyFaceOut]


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


class CreatedKeyOut(KeyOut):
    key: str = Field(description="the key itself, shown once")


class KeyCreate(_Strict):
    name: str = Field(min_length=1, max_length=100)
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
    name: str
    scopes: list[str]


# ---- responses of the system, admin and export routes (every route declares its body) ----


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    database: bool
    model: bool
    index: bool = Field(description="the index holds exactly the database's embeddings")


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: ReadyChecks
    model_version: str


class ModelInUse(ModelCard):
    """The model card in use, with the onnxruntime execution providers running it."""

    execution_providers: list[str]


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
