"""The model card declares every field it carries: shipped cards load and round-trip, unknown
fields are refused, and the publishers' fields (published_at, parent_version, org_calibration,
fusion) are typed."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from service.errors import ModelError
from service.model_card import ModelCard, OrgCalibration, load_card, write_card
from service.model_registry import derived_card, read_entry
from service.settings import Settings

SHIPPED = Settings().models_dir
CARDS = sorted(SHIPPED.glob("**/model.json"))
ORG = {
    "version": "1.0.0-cal.20250301T101500Z",
    "based_on": "1.0.0",
    "a": 12.5,
    "b": -6.25,
    "target_far": 0.001,
    "threshold": {"similarity": 0.61, "score": 0.7, "far": 0.0009, "frr": 0.04},
    "far": 0.0009,
    "frr": 0.04,
    "far_estimated_down_to": 0.001,
    "photos": 40,
    "photos_used": 38,
    "people": 10,
    "genuine_pairs": 60,
    "impostor_pairs": 640,
    "pairs": "all pairs of a labelled folder",
}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A copy of the smallest shipped card with a stand-in ONNX file (hash not checked)."""
    source = SHIPPED / "baselines" / "scratch-mobilefacenet" / "model.json"
    if not source.is_file():
        pytest.skip("models/baselines/scratch-mobilefacenet is missing")
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(source, folder / "model.json")
    (folder / "model.onnx").write_bytes(b"stand-in")
    return folder


def _edit(folder: Path, change) -> None:
    data = json.loads((folder / "model.json").read_text())
    change(data)
    (folder / "model.json").write_text(json.dumps(data))


@pytest.mark.parametrize("path", CARDS, ids=[str(p.parent.relative_to(SHIPPED)) for p in CARDS])
def test_every_shipped_card_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    card = load_card(path.parent)  # the sha256 of its ONNX file is checked too
    write_card(card, tmp_path)
    assert json.loads((tmp_path / "model.json").read_text()) == json.loads(path.read_text())


def test_the_shipped_cards_fields_are_typed() -> None:
    fused = SHIPPED / "fused"
    if not (fused / "model.json").is_file():
        pytest.skip("models/fused is missing")
    card = load_card(fused, verify_hash=False)
    assert card.fusion is not None and [m.weight for m in card.fusion] == [0.4, 0.6]
    assert card.calibration.impostor_sources and card.calibration.impostor_sources[0].impostor_pairs > 0
    assert card.calibration.logistic_pairs is not None
    assert card.published_at is None and card.parent_version is None and card.org_calibration is None


def test_an_unknown_field_is_refused(model_dir: Path) -> None:
    _edit(model_dir, lambda d: d.update(publishd_at="2025-03-01T10:15:00Z"))  # a typo
    with pytest.raises(ModelError, match="publishd_at"):
        load_card(model_dir, verify_hash=False)


def test_an_unknown_nested_field_is_refused(model_dir: Path) -> None:
    _edit(model_dir, lambda d: d["calibration"].update(note="free text"))
    with pytest.raises(ModelError, match="note"):
        load_card(model_dir, verify_hash=False)


def test_published_at_without_a_zone_is_utc_and_read_by_the_registry(model_dir: Path) -> None:
    _edit(model_dir, lambda d: d.update(published_at="2025-03-01T10:15:00", parent_version="0.0.9"))
    entry = read_entry(model_dir)
    assert entry.published_at == datetime(2025, 3, 1, 10, 15, tzinfo=timezone.utc)
    assert entry.parent_version == "0.0.9"


def test_an_unreadable_published_at_is_refused(model_dir: Path) -> None:
    _edit(model_dir, lambda d: d.update(published_at="yesterday"))
    with pytest.raises(ModelError, match="published_at"):
        load_card(model_dir, verify_hash=False)


def test_a_derived_card_carries_a_typed_org_calibration_that_reads_back(model_dir: Path) -> None:
    parent = load_card(model_dir, verify_hash=False)
    card = derived_card(parent, ORG["version"], org_calibration=ORG)
    assert isinstance(card.org_calibration, OrgCalibration)
    assert card.org_calibration.threshold.frr == 0.04 and card.parent_version == parent.version
    assert card.published_at is not None and card.published_at.tzinfo is not None
    write_card(card, model_dir)
    again = load_card(model_dir, verify_hash=False)
    assert again == card and again.org_calibration == card.org_calibration


def test_an_org_calibration_with_an_unknown_member_is_refused(model_dir: Path) -> None:
    parent = load_card(model_dir, verify_hash=False)
    with pytest.raises(ValueError, match="surprise"):
        derived_card(parent, "x", org_calibration={**ORG, "surprise": 1})


def test_a_card_without_the_publishers_fields_writes_none_of_them(model_dir: Path) -> None:
    card = load_card(model_dir, verify_hash=False)
    write_card(card, model_dir)
    written = json.loads((model_dir / "model.json").read_text())
    assert not {"published_at", "parent_version", "org_calibration", "fusion"} & set(written)
    assert ModelCard.model_validate(written) == card
