"""FACEGATE_SELFTRAIN_DIR: off by default; on, a match at a very high score keeps the probe's aligned
crop for the retraining job, a lower score or a no-match keeps nothing, deleting the person removes
theirs (needs the shipped models and LFW photos)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from service.model_card import load_card
from service.settings import DEFAULT_MODEL, Settings
from tests.service.conftest import jpeg


def _photo(path: Path) -> bytes:
    return jpeg(Image.open(path))


def test_an_empty_setting_is_off() -> None:
    assert Settings(selftrain_dir="").selftrain_dir is None
    assert Settings().selftrain_dir is None


def test_matches_at_a_very_high_score_keep_the_crop_and_deleting_forgets(
    make_client, lfw_people, tmp_path
) -> None:
    a, b = (sorted(p.glob("*.jpg")) for p in lfw_people[:2])
    store = tmp_path / "accepted"
    off = make_client()
    enrolled = off.post("/enroll", files={"image": ("a.jpg", _photo(a[0]), "image/jpeg")},
                        data={"name": "A", "person_id": "a"})  # fmt: skip
    assert enrolled.status_code == 201, enrolled.text
    assert off.post("/verify", files={"image": ("a.jpg", _photo(a[0]), "image/jpeg")},
                    data={"person_id": "a"}).json()["match"]  # fmt: skip
    assert not store.exists()  # the default: nothing kept anywhere
    client = make_client(selftrain_dir=store, selftrain_min_score=0.99)
    same = client.post(
        "/verify", files={"image": ("a.jpg", _photo(a[0]), "image/jpeg")}, data={"person_id": "a"}
    )
    assert same.json()["match"] and same.json()["score"] >= 0.99
    other = client.post(
        "/verify", files={"image": ("b.jpg", _photo(b[0]), "image/jpeg")}, data={"person_id": "a"}
    )
    assert not other.json()["match"]
    found = client.post("/identify", files={"image": ("a.jpg", _photo(a[0]), "image/jpeg")})
    assert found.json()["result"] == "match"
    kept = sorted(store.rglob("*.png"))
    assert len(kept) == 2 and all(p.parent.name == b"a".hex() for p in kept)
    served = load_card(Settings().models_dir / DEFAULT_MODEL)  # the crop the served model embeds
    assert Image.open(kept[0]).size == tuple(served.alignment.size)
    assert client.delete("/people/a").status_code == 204
    assert not list(store.rglob("*.png"))
