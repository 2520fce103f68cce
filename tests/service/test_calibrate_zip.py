"""POST /admin/calibrate with malformed or oversized archives: a 4xx problem, nothing published.

Each archive here once answered 500 (or was unpacked without a bound): a member failing its CRC,
a pairs.csv that is not UTF-8, photos without a usable face, a member whose header understates its
size, an encrypted member, an unknown compression method.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.org_calibration import MAX_FILES
from tests.service.api_helpers import assert_problem
from tests.service.conftest import jpeg
from tests.service.lifecycle_helpers import private_models, start_client

LIMIT = 1 << 20  # calibrate_max_bytes for these tests


def _zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _patch_central(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of every central-directory entry (offset from the entry's signature)."""
    out = bytearray(data)
    start = 0
    while (at := out.find(b"PK\x01\x02", start)) >= 0:
        struct.pack_into(fmt, out, at + offset, value)
        start = at + 4
    return bytes(out)


def _faceless_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return jpeg(Image.fromarray(rng.integers(90, 110, (160, 160, 3), dtype=np.uint8)))


@pytest.fixture
def setup(tmp_path: Path):
    models = private_models(tmp_path)
    client = start_client(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, models, calibrate_max_bytes=LIMIT)
    yield client, models
    client.__exit__(None, None, None)


def _post(client, archive: bytes):
    return client.post("/admin/calibrate", files={"archive": ("x.zip", archive, "application/zip")})


def _refused(setup, archive: bytes, status: int, code: str) -> dict:
    client, models = setup
    folders = set(models.iterdir())
    body = assert_problem(_post(client, archive), status, code)
    assert set(models.iterdir()) == folders  # nothing published
    assert client.get("/healthz").status_code == 200
    return body


def test_a_member_failing_its_crc_is_refused(setup) -> None:
    archive = bytearray(_zip({"p0/a.jpg": b"A" * 500, "p1/b.jpg": b"B" * 500}, zipfile.ZIP_STORED))
    at = archive.find(b"A" * 500)
    archive[at + 100] = ord("Z")  # stored data no longer matches the CRC in the headers
    body = _refused(setup, bytes(archive), 422, "invalid_request")
    assert "p0/a.jpg" in body["detail"]


def test_pairs_csv_that_is_not_utf8_is_refused(setup) -> None:
    files = {f"p{i}/{k}.jpg": b"x" for i in range(2) for k in range(2)}
    files["pairs.csv"] = "a,b,same\np0/0.jpg,p0/1.jpg,1\n".encode("utf-16")
    body = _refused(setup, _zip(files), 422, "invalid_request")
    assert "UTF-8" in body["detail"]


def test_pairs_csv_with_a_short_row_is_refused(setup) -> None:
    files = {f"p{i}/{k}.jpg": b"x" for i in range(2) for k in range(2)}
    files["pairs.csv"] = b"same,a,b\n1,p0/0.jpg\n"  # b missing
    _refused(setup, _zip(files), 422, "invalid_request")


def test_photos_without_a_usable_face_are_refused_with_the_reasons(setup) -> None:
    files = {f"p{i}/{k}.jpg": _faceless_jpeg(10 * i + k) for i in range(3) for k in range(2)}
    body = _refused(setup, _zip(files), 422, "invalid_request")
    assert body["genuine_pairs"] == 0 and body["impostor_pairs"] == 0
    assert sorted(s["photo"] for s in body["skipped"]) == sorted(files)
    assert {s["reason"] for s in body["skipped"]} == {"no_face"}


def test_an_archive_unpacking_past_the_limit_is_refused(setup) -> None:
    files = {"p0/a.jpg": bytes(LIMIT // 2), "p1/b.jpg": bytes(LIMIT // 2 + 1)}  # compresses to ~2 KB
    body = _refused(setup, _zip(files), 413, "archive_too_large")
    assert body["max_bytes"] == LIMIT


def test_a_member_understating_its_size_is_not_unpacked_past_it(setup) -> None:
    """The limit is counted on the bytes read, not on the sizes the headers declare."""
    archive = _zip({"p0/a.jpg": bytes(4 * LIMIT), "p1/b.jpg": b"x"})
    lying = _patch_central(archive, 24, "<I", 10)  # central directory: uncompressed size 10
    body = _refused(setup, lying, 422, "invalid_request")
    assert "p0/a.jpg" in body["detail"]


def test_too_many_files_are_refused(setup) -> None:
    files = {f"p{i % 50}/{i}.jpg": b"" for i in range(MAX_FILES + 1)}
    body = _refused(setup, _zip(files, zipfile.ZIP_STORED), 413, "archive_too_many_files")
    assert body["max_files"] == MAX_FILES


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "why"),
    [(8, "<H", 0x1, "encrypted"), (10, "<H", 99, "compression method")],
    ids=["encrypted", "unknown-method"],
)
def test_members_that_cannot_be_read_are_refused(setup, offset, fmt, value, why) -> None:
    archive = _patch_central(_zip({"p0/a.jpg": b"x" * 100, "p1/b.jpg": b"y" * 100}), offset, fmt, value)
    body = _refused(setup, archive, 422, "invalid_request")
    assert why in body["detail"]


def test_duplicate_member_names_are_refused(setup) -> None:
    buf = io.BytesIO()
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "w") as z:
        z.writestr("p0/a.jpg", b"one")
        z.writestr("p0/a.jpg", b"two")
        z.writestr("p1/b.jpg", b"three")
    body = _refused(setup, buf.getvalue(), 422, "invalid_request")
    assert "p0/a.jpg" in body["detail"]
