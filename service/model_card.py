"""The model card (``model.json`` beside ``model.onnx``): what the service needs to run a model.

Thresholds are stored on the cosine-similarity scale, as a table of (false-accept rate,
similarity) points estimated from impostor pairs, so that /identify can look up the threshold
for ``FPIR / gallery_size`` down to 1e-6, and optionally a fitted tail (``FittedTail``) that
carries the table to stricter rates with a stated fit.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.errors import ModelError


class _Frozen(BaseModel):
    """Every card field is declared: an unknown one (a typo, a field no code reads) is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class InputSpec(_Frozen):
    size: tuple[int, int] = Field(description="(width, height) of the aligned crop fed to the model")
    color: str = "RGB"
    dtype: str = "uint8"
    layout: str = Field("NHWC", description="the ONNX input is uint8 [N, H, W, 3]")


class Alignment(_Frozen):
    size: tuple[int, int] = Field(description="(width, height) of the aligned crop")
    template: list[tuple[float, float]] = Field(
        description="5 points in crop pixels: left eye, right eye, nose tip, left and right mouth corner "
        "(left/right as seen in the image)"
    )
    method: str = "similarity"
    notes: str = ""


class FarPoint(_Frozen):
    far: float
    similarity: float


class LogisticPairs(_Frozen):
    """Where the pairs ``a, b`` were fitted on came from (training.evaluation.calibration)."""

    source: str
    no_face_pairs: int = 0


class ImpostorSource(_Frozen):
    """One labelled set whose cross-identity pairs fed the false-accept table."""

    source: str
    about: str = ""
    images: int
    no_face: int = 0
    identities: int
    impostor_pairs: int
    similarity_at_far: dict[str, float] = Field(
        default_factory=dict, description="this set's own similarity threshold at a few rates"
    )


class TailCheck(_Frozen):
    """One rate where the fit is compared with impostor pairs it did not need to reach."""

    far: float
    measured: float = Field(description="similarity threshold measured on every impostor pair")
    fitted: float = Field(description="the threshold predicted by the fit named in the check")
    upper: float | None = Field(
        None, description="the upper end of that fit's 95 % bootstrap interval (median over repeats)"
    )
    covered: float | None = Field(None, description="share of repeats whose upper end reached `measured`")
    worst_shortfall: float | None = Field(None, description="the most any repeat's upper end fell below it")


class FittedTail(_Frozen):
    """The impostor tail beyond the measured table: a generalised Pareto distribution fitted to
    the impostor similarities above ``threshold`` (training.evaluation.tail_fit).

    ``table`` holds the thresholds the service uses below the measured table: the upper end of
    a 95 % bootstrap interval of the fitted threshold plus ``margin`` (the most the same method
    fell short in its held-out checks), never looser than the strictest measured threshold.
    ``estimate`` holds the fit's point estimates.
    """

    model: str = "generalized_pareto"
    threshold: float = Field(description="u: the fit describes impostor similarities above it")
    far_at_threshold: float = Field(description="share of impostor pairs above u")
    exceedances: int
    shape: float = Field(description="xi (negative: a bounded tail)")
    scale: float = Field(description="sigma, on the similarity scale")
    ks_distance: float = Field(description="Kolmogorov-Smirnov distance of the exceedances to the fit")
    margin: float = Field(0.0, description="added to every upper bound: the held-out checks' worst shortfall")
    table: list[FarPoint] = Field(description="thresholds used beyond the measured table, far descending")
    estimate: list[FarPoint] = Field(description="the fit's point estimates at the same rates")
    in_sample: list[TailCheck] = Field(
        default_factory=list, description="the fit against the measured table below u"
    )
    held_out: list[TailCheck] = Field(
        default_factory=list,
        description="the same method fitted on a small random share of the pairs against every pair",
    )
    about: str = ""


class Calibration(_Frozen):
    a: float
    b: float
    far_table: list[FarPoint] = Field(
        description="similarity threshold per false-accept rate, far descending"
    )
    far_tail: FittedTail | None = Field(
        None, description="a fitted impostor tail for rates stricter than far_table measured"
    )
    data: str = Field("", description="the pairs the calibration was fitted on")
    genuine_pairs: int = 0
    impostor_pairs: int = 0
    logistic_pairs: LogisticPairs | None = None
    impostor_sources: list[ImpostorSource] | None = None
    cross_source_pairs: int | None = Field(
        None, description="impostor pairs taken across two sources (the rest are within one)"
    )

    def score(self, similarity: float) -> float:
        z = self.a * similarity + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def similarity_for_score(self, score: float) -> float:
        return (math.log(score / (1.0 - score)) - self.b) / self.a

    @property
    def strictest_measured_far(self) -> float:
        """The smallest false-accept rate the table was measured for."""
        return min(p.far for p in self.far_table)

    @property
    def strictest_far(self) -> float:
        """The smallest false-accept rate the calibration supports: measured, or fitted beyond."""
        fitted = [p.far for p in self.far_tail.table] if self.far_tail else []
        return min([self.strictest_measured_far, *fitted])

    def thresholds(self) -> list[FarPoint]:
        """The measured table, then the fitted tail's rows beyond it (far descending; never a
        looser threshold at a stricter rate)."""
        pts = sorted(self.far_table, key=lambda p: -p.far)
        if self.far_tail and pts:
            floor = pts[-1].similarity
            for p in sorted(self.far_tail.table, key=lambda p: -p.far):
                if p.far < pts[-1].far:
                    floor = max(floor, p.similarity)
                    pts.append(FarPoint(far=p.far, similarity=floor))
        return pts

    def similarity_at_far(self, far: float) -> float:
        """Similarity threshold for a per-comparison false-accept rate (log-linear interpolation).

        Past the measured table the fitted tail's rows are used when the card has one. Below the
        smallest supported rate the last point is used: the estimate cannot be finer than the
        data it came from, so the stricter end is clamped, never extrapolated to a looser value.
        """
        pts = self.thresholds()
        if not pts:
            raise ModelError("model card has no false-accept table")
        if far >= pts[0].far:
            return pts[0].similarity
        for hi, lo in zip(pts, pts[1:]):
            if lo.far <= far <= hi.far:
                t = (math.log(far) - math.log(hi.far)) / (math.log(lo.far) - math.log(hi.far))
                return hi.similarity + t * (lo.similarity - hi.similarity)
        return pts[-1].similarity


class MeasuredThreshold(_Frozen):
    """FAR and FRR measured on the organisation's photos at one similarity threshold."""

    similarity: float
    score: float
    far: float
    frr: float


class OrgCalibration(_Frozen):
    """What ``/admin/calibrate`` (service.org_calibration) measured for the version it published."""

    version: str
    based_on: str = Field(description="the version that was calibrated")
    a: float
    b: float
    target_far: float
    threshold: MeasuredThreshold = Field(description="the threshold at target_far")
    far: float
    frr: float
    far_estimated_down_to: float
    photos: int
    photos_used: int
    people: int
    genuine_pairs: int
    impostor_pairs: int
    pairs: str = Field(description="where the pairs came from: pairs.csv or all pairs of the folder")


class FusionMember(_Frozen):
    """One network of a fused model (training.export.fusion), enough to rebuild and check it."""

    name: str
    version: str
    sha256: str
    weight: float
    flip: bool
    template: list[tuple[float, float]]
    size: tuple[int, int]


class ModelCard(_Frozen):
    name: str
    version: str
    file: str = "model.onnx"
    sha256: str
    license: str
    training_data: list[dict[str, str]] = Field(default_factory=list)
    input: InputSpec
    alignment: Alignment
    embedding_dim: int
    calibration: Calibration
    evaluation: dict = Field(default_factory=dict)
    provenance: str = ""
    # written by the publishers of derived versions (model_registry.derived_card)
    published_at: datetime | None = Field(
        None, description="when the version was published (UTC); a card without it is the oldest"
    )
    parent_version: str | None = Field(None, description="the version this one was derived from")
    org_calibration: OrgCalibration | None = Field(
        None, description="set by /admin/calibrate: what it measured on the organisation's photos"
    )
    fusion: list[FusionMember] | None = Field(None, description="the members of a fused model")

    @field_validator("published_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """A time written without a zone is UTC (the publishers always wrote UTC)."""
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_card(model_dir: Path, verify_hash: bool = True) -> ModelCard:
    """Read ``model.json`` and check the ONNX file against its sha256; refuse on mismatch."""
    card_path = model_dir / "model.json"
    if not card_path.is_file():
        raise ModelError(f"no model card at {card_path}")
    try:
        card = ModelCard.model_validate(json.loads(card_path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"invalid model card {card_path}: {exc}") from exc
    onnx_path = model_dir / card.file
    if not onnx_path.is_file():
        raise ModelError(f"model file {onnx_path} missing")
    if verify_hash:
        digest = file_sha256(onnx_path)
        if digest != card.sha256:
            raise ModelError(
                f"model file {onnx_path} has sha256 {digest}, its card says {card.sha256}: refusing to load"
            )
    return card


def write_card(card: ModelCard, model_dir: Path) -> Path:
    path = model_dir / "model.json"
    # fields a card does not carry (None) are left out, so a card reads back as it was written
    path.write_text(json.dumps(card.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
    return path
