"""The model card (``model.json`` beside ``model.onnx``): what the service needs to run a model.

Thresholds are stored on the cosine-similarity scale, as a table of (false-accept rate,
similarity) points estimated from impostor pairs, so that /identify can look up the threshold
for ``FPIR / gallery_size`` down to 1e-6.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from service.errors import ModelError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", protected_namespaces=())


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


class Calibration(_Frozen):
    a: float
    b: float
    far_table: list[FarPoint] = Field(
        description="similarity threshold per false-accept rate, far descending"
    )
    data: str = Field("", description="the pairs the calibration was fitted on")
    genuine_pairs: int = 0
    impostor_pairs: int = 0

    def score(self, similarity: float) -> float:
        z = self.a * similarity + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def similarity_for_score(self, score: float) -> float:
        return (math.log(score / (1.0 - score)) - self.b) / self.a

    @property
    def strictest_far(self) -> float:
        """The smallest false-accept rate the table was measured for."""
        return min(p.far for p in self.far_table)

    def similarity_at_far(self, far: float) -> float:
        """Similarity threshold for a per-comparison false-accept rate (log-linear interpolation).

        Below the smallest tabulated rate the last point is used: the estimate cannot be finer
        than the impostor pairs it came from, so the stricter end is clamped, never extrapolated
        to a looser value.
        """
        pts = sorted(self.far_table, key=lambda p: -p.far)
        if not pts:
            raise ModelError("model card has no false-accept table")
        if far >= pts[0].far:
            return pts[0].similarity
        for hi, lo in zip(pts, pts[1:]):
            if lo.far <= far <= hi.far:
                t = (math.log(far) - math.log(hi.far)) / (math.log(lo.far) - math.log(hi.far))
                return hi.similarity + t * (lo.similarity - hi.similarity)
        return pts[-1].similarity


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
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return path
