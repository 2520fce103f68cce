"""Reference crops and embeddings encrypted at rest, on SQLite and PostgreSQL.

Read without the key, the database reveals no face: no stored crop decodes as an image and no
stored vector is (or approximates) the embedding the service serves. A missing or wrong key stops
the start instead of failing request by request; keys rotate while the gallery keeps working.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import text
from typer.testing import CliRunner

from service.gallery import cipher, encryption
from service.gallery.cipher import TemplateCipher, TemplateKeyError, new_key, parse_keys
from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import Gallery
from service.index import FaceIndex
from service.settings import Settings
from tests.conftest import REPO
from tests.service.conftest import ADMIN_KEY, models_available
from tests.service.storage_helpers import (
    DIM,
    assert_index_equals_database,
    enroll,
    make_enrolment,
)

K1, K2 = new_key("k1"), new_key("k2")


def keys(*entries: str) -> TemplateCipher:
    return TemplateCipher.from_setting(",".join(entries))


def raw_rows(url: str) -> tuple[list[bytes], list[bytes]]:
    """Every stored crop and vector as the database holds them, read with no FaceGate code."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            crops = [bytes(r[0]) for r in conn.execute(text("SELECT image_png FROM reference_crops"))]
            vectors = [bytes(r[0]) for r in conn.execute(text("SELECT vector FROM embeddings"))]
    finally:
        engine.dispose()
    return crops, vectors


def decodes_as_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:  # any failure to decode: not an image
        return False


def nearest_distance(blob: bytes, vector: np.ndarray) -> float:
    """The smallest L2 distance between ``vector`` and any run of len(vector) float32 values read
    from ``blob`` at any byte offset: how close the stored bytes come to holding the vector (a
    unit vector; 0 when it is stored as it is, under 0.5 when within cosine 0.87 of it)."""
    v = np.asarray(vector, np.float64)
    best = np.inf
    for offset in range(4):
        usable = (len(blob) - offset) // 4
        floats = np.frombuffer(blob[offset : offset + 4 * usable], "<f4")
        with np.errstate(invalid="ignore", over="ignore"):
            floats = np.nan_to_num(floats.astype(np.float64), nan=1e30, posinf=1e30, neginf=-1e30)
        if usable >= len(v):
            windows = np.lib.stride_tricks.sliding_window_view(floats, len(v))
            best = min(best, float(np.sqrt(((windows - v) ** 2).sum(axis=1)).min()))
    return best


def assert_reveals_nothing(crops: list[bytes], vectors: list[bytes], served: dict[str, tuple]) -> None:
    """No raw crop is an image or holds a served crop; no raw vector holds a served embedding."""
    assert crops and vectors
    for raw in crops:
        assert raw.startswith(cipher.HEADER)
        assert not decodes_as_image(raw) and b"\x89PNG" not in raw and b"IHDR" not in raw
    for raw in vectors:
        assert raw.startswith(cipher.HEADER)
    for pid, (png, vector) in served.items():
        assert decodes_as_image(png), pid  # the service itself still serves the face
        assert all(png not in raw and png[8:64] not in raw for raw in crops)
        assert all(np.asarray(vector, np.float32).tobytes() not in raw for raw in vectors)
        closest = min(nearest_distance(raw, vector) for raw in vectors)
        assert closest > 0.5, (pid, closest)


@pytest.fixture
def engine(database_url):
    e = make_engine(database_url)
    yield e
    e.dispose()


def gallery_on(engine, c: TemplateCipher | None, version: str = "m1") -> Gallery:
    g = Gallery(session_factory(engine, c), FaceIndex(DIM), version)
    g.load()
    return g


# ---- the envelope ----


def test_envelope_round_trip_binds_the_row_and_hides_the_plaintext():
    c = keys(K1)
    png = make_enrolment(np.random.default_rng(0), "a").crop
    sealed = c.seal_crop(png, 7)
    assert sealed.startswith(cipher.prefix("k1")) and cipher.key_id_of(sealed) == "k1"
    assert png not in sealed and c.open_crop(sealed, 7) == png
    assert c.seal_crop(png, 7) != sealed  # a fresh nonce each time
    with pytest.raises(TemplateKeyError, match="altered"):
        c.open_crop(sealed, 8)  # another person's row
    vec = np.ones(DIM, np.float32).tobytes()
    with pytest.raises(TemplateKeyError):
        c.open_vector(c.seal_vector(vec, 7, "m1"), 7, "m2")  # another model version's row
    assert TemplateCipher().open_crop(png, 7) == png  # plain legacy values read as they are
    assert TemplateCipher().seal_crop(png, 7) == png  # no keys: encryption off


def test_plain_vectors_cannot_be_taken_for_envelopes():
    # The magic, read as a little-endian float32, is far outside any unit vector's range.
    first = float(np.frombuffer(cipher.MAGIC, "<f4")[0])
    assert abs(first) > 1000


def test_keys_setting_is_validated_without_echoing_the_key():
    assert [k for k, _ in parse_keys(f"{K2}, {K1}")] == ["k2", "k1"]
    assert Settings(encryption_keys=K1).encryption_keys is not None
    bad = "k1:" + K1.split(":")[1][:-8]
    for value, message in [
        (bad, "k1"),
        ("k1", "id:key"),
        ("waytoolongid:" + K1.split(":")[1], "id:key"),
        (f"{K1},{K1}", "twice"),
    ]:
        with pytest.raises(ValidationError, match=message) as info:
            Settings(encryption_keys=value)
        assert K1.split(":")[1][:12] not in str(info.value)
    assert "*" in repr(Settings(encryption_keys=K1).encryption_keys)


# ---- in the database ----


def test_raw_rows_reveal_no_face(engine, database_url):
    rng = np.random.default_rng(1)
    g = gallery_on(engine, keys(K1))
    people = [make_enrolment(rng, f"p{i}") for i in range(6)]
    for e in people:
        enroll(g, e)
    crops, vectors = raw_rows(database_url)
    assert_reveals_nothing(crops, vectors, {e.person_id: (g.crop(e.person_id), e.vector) for e in people})
    # the service reads everything back, and the index holds the vectors in clear
    again = gallery_on(engine, keys(K1))
    for e in people:
        assert again.crop(e.person_id) == e.crop
        assert np.array_equal(again.embedding_of(e.person_id), e.vector)
        assert again.search(e.vector, 1)[0].person_id == e.person_id
    exported = again.export(people[0].person_id)
    assert np.allclose(exported["embeddings"][0]["vector"], people[0].vector)
    assert_index_equals_database_opened(again)


def assert_index_equals_database_opened(g: Gallery) -> None:
    assert g.consistency_check()
    with g.session_factory() as s:
        rows = s.execute(text("SELECT id, person_pk, vector FROM embeddings WHERE model_version = :v"),
                         {"v": g.model_version}).all()  # fmt: skip
        c = cipher.of(s)
    for eid, pk, blob in rows:
        assert np.array_equal(
            g.index.vector(eid), np.frombuffer(c.open_vector(blob, pk, g.model_version), "<f4")
        )


def test_a_missing_or_wrong_key_is_refused_before_anything_is_served(engine):
    g = gallery_on(engine, keys(K1))
    enroll(g, make_enrolment(np.random.default_rng(2), "a"))
    wrong_k1 = new_key("k1")
    for configured, message in [
        (TemplateCipher(), r"key 'k1' \(2 rows\).*lists: none"),
        (keys(K2), r"key 'k1'.*lists: k2"),
        (keys(wrong_k1), "not the key the database was written with"),
    ]:
        with pytest.raises(TemplateKeyError, match=message):
            encryption.check_keys(session_factory(engine, configured))
    assert encryption.check_keys(session_factory(engine, keys(K2, K1))).key_ids() == {"k1"}


def test_legacy_plain_rows_stay_readable_and_rotate_seals_them(engine, database_url):
    rng = np.random.default_rng(3)
    plain = gallery_on(engine, None)
    old = [make_enrolment(rng, f"old{i}") for i in range(5)]
    for e in old:
        enroll(plain, e)
    g = gallery_on(engine, keys(K1))  # encryption switched on over a plain database
    new = make_enrolment(rng, "new")
    enroll(g, new)
    assert all(g.crop(e.person_id) == e.crop for e in [*old, new])
    found = encryption.check_keys(g.session_factory)
    assert found.counts == {"crops": {"(plain)": 5, "k1": 1}, "embeddings": {"(plain)": 5, "k1": 1}}
    report = encryption.rotate(g.session_factory, batch=2, pause=0)
    assert report.rewritten == {"crops": 5, "embeddings": 5} and report.batches == 6
    crops, vectors = raw_rows(database_url)
    assert_reveals_nothing(crops, vectors, {e.person_id: (e.crop, e.vector) for e in [*old, new]})
    assert encryption.rotate(g.session_factory).rewritten == {"crops": 0, "embeddings": 0}
    again = gallery_on(engine, keys(K1))
    assert all(again.crop(e.person_id) == e.crop for e in [*old, new])


def test_rotation_to_a_new_key_while_the_gallery_enrols(engine):
    rng = np.random.default_rng(4)
    before = gallery_on(engine, keys(K1))
    first = [make_enrolment(rng, f"a{i}") for i in range(40)]
    for e in first:
        enroll(before, e)
    # the service restarted with the new key first and the old one still listed
    g = gallery_on(engine, keys(K2, K1))
    during = [make_enrolment(rng, f"b{i}") for i in range(15)]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for e in during:
                enroll(g, e)
            enroll(g, make_enrolment(rng, "a0"), replace=True)  # a crop replaced mid-rotation
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    report = encryption.rotate(g.session_factory, batch=4, pause=0.001)
    t.join()
    assert not errors and report.rewritten["crops"] >= 39
    encryption.rotate(g.session_factory)  # nothing a writer left on k1 survives a second pass
    assert encryption.check_keys(g.session_factory).counts == {
        "crops": {"k2": 55},
        "embeddings": {"k2": 55},
    }
    only_new = gallery_on(engine, keys(K2))  # the old key can now be dropped
    for e in [*first[1:], *during]:
        assert only_new.crop(e.person_id) == e.crop
        assert only_new.search(e.vector, 1)[0].person_id == e.person_id
    assert only_new.size() == 55
    assert_index_equals_database_opened(only_new)
    with pytest.raises(TemplateKeyError):
        encryption.check_keys(session_factory(engine, keys(K1)))


def test_a_new_model_version_embeds_sealed_crops_and_seals_its_embeddings(engine, database_url):
    """A swap's backfill (and a replica's refresh) opens the stored crops and seals what it stores."""
    from service.crop_embed import StoredCrop
    from service.gallery.synced import SyncedGallery

    rng = np.random.default_rng(8)
    g = gallery_on(engine, keys(K1))
    people = [make_enrolment(rng, f"s{i}") for i in range(3)]
    for e in people:
        enroll(g, e)
    seen: list[bytes] = []

    def reembed(crops: list[StoredCrop]) -> np.ndarray:
        seen.extend(c.png for c in crops)
        return np.stack([e.vector[::-1].copy() for e in people if e.crop in [c.png for c in crops]])

    m2 = SyncedGallery(session_factory(engine, keys(K1)), FaceIndex(DIM), "m2", reembed=reembed)
    m2.load()
    assert m2.backfill() == 3 and sorted(seen) == sorted(e.crop for e in people)  # opened, not sealed
    crops, vectors = raw_rows(database_url)
    assert_reveals_nothing(crops, vectors, {e.person_id: (e.crop, e.vector[::-1]) for e in people})
    again = gallery_on(engine, keys(K1), "m2")
    assert all(again.search(e.vector[::-1], 1)[0].person_id == e.person_id for e in people)


def test_retraining_reads_the_sealed_crops(engine, monkeypatch):
    pytest.importorskip("torch")
    from service.model_card import load_card
    from service.settings import DEFAULT_MODEL
    from training.retrain.data import gallery_crops

    if not models_available():
        pytest.skip("the shipped models are missing")
    rng = np.random.default_rng(9)
    g = gallery_on(engine, keys(K1))
    enroll(g, make_enrolment(rng, "r0"))
    card = load_card(Settings().models_dir / DEFAULT_MODEL)
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("FACEGATE_ENCRYPTION_KEYS", K1)
    crops = gallery_crops(url, card)
    assert len(crops) == 1 and crops.crops.shape[1:3] == tuple(reversed(card.alignment.size))
    monkeypatch.delenv("FACEGATE_ENCRYPTION_KEYS")
    with pytest.raises(TemplateKeyError):
        gallery_crops(url, card)


def test_rotate_needs_a_key(engine):
    with pytest.raises(TemplateKeyError, match="not set"):
        encryption.rotate(session_factory(engine))


def test_storage_helpers_still_hold_for_an_encrypted_gallery(engine):
    """The plain-text helpers compare raw rows: with encryption off they keep their meaning."""
    g = gallery_on(engine, None)
    enroll(g, make_enrolment(np.random.default_rng(5), "x"))
    assert_index_equals_database(g)


# ---- the command line and the service ----


def cli(monkeypatch, url: str, tmp_path, *args: str, keys_value: str | None = None):
    from service.cli import app
    from service.settings import get_settings

    monkeypatch.setenv("FACEGATE_DATABASE_URL", url)
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path / "var"))
    if keys_value is None:
        monkeypatch.delenv("FACEGATE_ENCRYPTION_KEYS", raising=False)
    else:
        monkeypatch.setenv("FACEGATE_ENCRYPTION_KEYS", keys_value)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()


def test_cli_new_key_status_and_rotate(engine, database_url, monkeypatch, tmp_path):
    made = cli(monkeypatch, database_url, tmp_path, "encryption", "new-key", "k7")
    assert made.exit_code == 0, made.output
    entry = made.output.strip().splitlines()[-1]
    assert [k for k, _ in parse_keys(entry)] == ["k7"]
    rng = np.random.default_rng(6)
    enroll(gallery_on(engine, None), make_enrolment(rng, "p"))
    enroll(gallery_on(engine, keys(K1)), make_enrolment(rng, "q"))
    status = cli(monkeypatch, database_url, tmp_path, "encryption", "status", keys_value=K1)
    assert status.exit_code == 0, status.output
    assert "k1" in status.output and "(plain)" in status.output
    refused = cli(monkeypatch, database_url, tmp_path, "encryption", "rotate", keys_value=entry)
    assert refused.exit_code == 1 and "'k1'" in refused.output  # k1 is not configured
    rotated = cli(monkeypatch, database_url, tmp_path, "encryption", "rotate", keys_value=f"{entry},{K1}")
    assert rotated.exit_code == 0, rotated.output
    assert "2 reference crops and 2 embeddings" in rotated.output
    after = encryption.check_keys(session_factory(engine, keys(entry)))
    assert after.counts == {"crops": {"k7": 2}, "embeddings": {"k7": 2}}


def _enrol_photos(client, people, count: int) -> dict[str, tuple[bytes, list[float]]]:
    served = {}
    for i, folder in enumerate(people[:count]):
        photo = sorted(folder.glob("*.jpg"))[0].read_bytes()
        r = client.post(
            "/enroll",
            files={"image": ("a.jpg", photo)},
            data={"person_id": f"lfw{i}", "name": folder.name, "face_selection": "largest"},
        )
        assert r.status_code == 201, r.text
        crop = client.get(f"/people/lfw{i}/crop")
        assert crop.status_code == 200
        exported = client.get(f"/people/lfw{i}/export").json()
        served[f"lfw{i}"] = (crop.content, exported["embeddings"][0]["vector"])
    return served


@pytest.mark.lfw
def test_service_database_without_the_key_shows_no_face(make_client, database_url, lfw_people):
    client = make_client(encryption_keys=K1)
    served = _enrol_photos(client, lfw_people, 4)
    probe = sorted(lfw_people[0].glob("*.jpg"))[0].read_bytes()
    assert client.post("/identify", files={"image": ("p.jpg", probe)}).json()["result"] == "match"
    client.__exit__(None, None, None)
    crops, vectors = raw_rows(database_url)
    assert len(crops) == len(vectors) == 4
    assert_reveals_nothing(crops, vectors, served)
    for configured in (None, new_key("k1"), K2):  # no key, a wrong key, another key
        with pytest.raises(TemplateKeyError, match="FACEGATE_ENCRYPTION_KEYS"):
            make_client(encryption_keys=configured)
    again = make_client(encryption_keys=f"{K2},{K1}")  # the old key still listed: serves
    answer = again.post("/identify", files={"image": ("p.jpg", probe)}).json()
    assert answer["result"] == "match" and answer["person"]["person_id"] == "lfw0"


@pytest.mark.skipif(not models_available(), reason="the shipped models are missing")
def test_serve_refuses_to_start_with_a_clear_message(engine, database_url, tmp_path):
    enroll(gallery_on(engine, keys(K1)), make_enrolment(np.random.default_rng(7), "a"))
    env = {
        **os.environ,  # noqa: TID251 - the server subprocess inherits the environment
        "FACEGATE_DATABASE_URL": database_url,
        "FACEGATE_DATA_DIR": str(tmp_path / "var"),
        "FACEGATE_ADMIN_KEY": ADMIN_KEY,
        "FACEGATE_ENCRYPTION_KEYS": K2,
    }
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "encrypted with key 'k1'" in done.stderr and "does not start" in done.stderr
