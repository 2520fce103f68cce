"""The model card: calibration look-ups, and loading refuses anything that does not match."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from service.errors import ModelError
from service.model_card import (
    Alignment,
    Calibration,
    FarPoint,
    InputSpec,
    ModelCard,
    file_sha256,
    load_card,
    write_card,
)

TABLE = [
    FarPoint(far=1e-2, similarity=0.40),
    FarPoint(far=1e-4, similarity=0.60),
    FarPoint(far=1e-6, similarity=0.80),
]


def _cal(**kw) -> Calibration:
    return Calibration(a=10.0, b=-5.0, far_table=kw.pop("far_table", TABLE), data="synthetic", **kw)


def test_score_is_the_logistic_of_similarity_and_inverts() -> None:
    cal = _cal()
    assert cal.score(0.5) == pytest.approx(0.5)
    assert cal.score(0.7) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert cal.score(-100.0) == pytest.approx(0.0, abs=1e-300)  # no overflow on either side
    assert cal.score(100.0) == pytest.approx(1.0)
    for s in (0.1, 0.45, 0.9):
        assert cal.similarity_for_score(cal.score(s)) == pytest.approx(s)


def test_similarity_at_far_interpolates_log_linearly() -> None:
    cal = _cal()
    assert cal.similarity_at_far(1e-2) == pytest.approx(0.40)
    assert cal.similarity_at_far(1e-4) == pytest.approx(0.60)
    assert cal.similarity_at_far(1e-3) == pytest.approx(0.50)  # half-way in log(far)
    assert cal.similarity_at_far(1e-5) == pytest.approx(0.70)


def test_similarity_at_far_clamps_at_both_ends() -> None:
    cal = _cal()
    assert cal.similarity_at_far(0.5) == pytest.approx(0.40)  # looser than the table: its loosest point
    assert cal.similarity_at_far(1e-9) == pytest.approx(0.80)  # finer than the data: never extrapolated
    shuffled = _cal(far_table=[TABLE[2], TABLE[0], TABLE[1]])
    assert shuffled.similarity_at_far(1e-3) == pytest.approx(0.50)
    with pytest.raises(ModelError):
        _cal(far_table=[]).similarity_at_far(1e-3)


def _card(sha: str) -> ModelCard:
    return ModelCard(
        name="test",
        version="1",
        sha256=sha,
        license="CC0-1.0",
        input=InputSpec(size=(112, 112)),
        alignment=Alignment(
            size=(112, 112), template=[(38.0, 52.0), (74.0, 52.0), (56.0, 72.0), (42.0, 92.0), (70.0, 92.0)]
        ),
        embedding_dim=128,
        calibration=_cal(),
    )


def test_card_round_trips_and_verifies_the_hash(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not really onnx")
    write_card(_card(file_sha256(tmp_path / "model.onnx")), tmp_path)
    card = load_card(tmp_path)
    assert card.calibration.similarity_at_far(1e-3) == pytest.approx(0.50)
    assert card.alignment.size == (112, 112)


def test_load_refuses_a_hash_mismatch(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"weights A")
    write_card(_card(file_sha256(tmp_path / "model.onnx")), tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"weights B")
    with pytest.raises(ModelError, match="sha256"):
        load_card(tmp_path)
    assert load_card(tmp_path, verify_hash=False).name == "test"


def test_load_refuses_missing_files_and_invalid_cards(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model card"):
        load_card(tmp_path)
    write_card(_card("0" * 64), tmp_path)
    with pytest.raises(ModelError, match="missing"):
        load_card(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    for broken in ("{not json", json.dumps({"name": "x"}), "[]"):
        (tmp_path / "model.json").write_text(broken)
        with pytest.raises(ModelError, match="invalid model card"):
            load_card(tmp_path)
