"""`facegate enroll-dir` at scale: worker processes, batched writes, resuming after an interruption.

Real LFW photos (skipped without ../shared/data/lfw) and the shipped models, on SQLite and
PostgreSQL. Each test builds a folder of ``<person_id>/<photo>`` from symlinks in a temporary
directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, event, text

from service.cli import PHOTO_SUFFIXES
from service.enroll_dir import EnrollReport, enroll_directory
from service.gallery.bulk import BatchResult
from service.gallery.tables import Person
from tests.service.api_helpers import post_photo
from tests.service.conftest import ADMIN_KEY, models_available

pytestmark = pytest.mark.lfw

REPO = Path(__file__).resolve().parents[2]
ALAN = "Alan_Ball/Alan_Ball_0001.jpg"
ALAN_AGAIN = "Alan_Ball/Alan_Ball_0002.jpg"  # the same face: a duplicate of ALAN
STRANGER = "Venus_Williams/Venus_Williams_0001.jpg"  # someone else entirely


def _folder(root: Path, person_id: str, photos: dict[str, Path | bytes]) -> Path:
    """root/person_id holding each photo (a symlink to an LFW file, or the bytes given)."""
    folder = root / person_id
    folder.mkdir(parents=True)
    for name, source in photos.items():
        if isinstance(source, Path):
            (folder / name).symlink_to(source)
        else:
            (folder / name).write_bytes(source)
    return folder


def _people_dir(root: Path, lfw_people: list[Path], n: int, offset: int = 0) -> list[Path]:
    """``n`` LFW people (their first 3 photos), as enroll-dir's folders."""
    out = []
    for person in lfw_people[offset : offset + n]:
        photos = sorted(person.glob("*.jpg"))[:3]
        out.append(_folder(root, person.name, {p.name: p for p in photos}))
    return out


def _grey_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(buf, "JPEG")
    return buf.getvalue()


def _run(recognizer, folders: list[Path], **kw) -> EnrollReport:
    return enroll_directory(
        recognizer,
        sorted(folders),
        PHOTO_SUFFIXES,
        kw.pop("replace", False),
        kw.pop("allow_duplicate", False),
        kw.pop("largest_face", False),
        **kw,
    )


def _rows(database_url: str) -> dict[str, int]:
    """Rows per table, and people missing any of their rows (a half-written person)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            count = {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("people", "reference_crops", "embeddings")
            }
            count["enroll_audit"] = conn.execute(
                text("SELECT count(*) FROM audit WHERE action = 'enroll'")
            ).scalar_one()
            count["upserts"] = conn.execute(
                text("SELECT count(*) FROM change_log WHERE op = 'upsert'")
            ).scalar_one()
            count["half_written"] = conn.execute(
                text(
                    "SELECT count(*) FROM people p WHERE NOT EXISTS (SELECT 1 FROM reference_crops c "
                    "WHERE c.person_pk = p.id) OR NOT EXISTS (SELECT 1 FROM embeddings e WHERE "
                    "e.person_pk = p.id) OR NOT EXISTS (SELECT 1 FROM audit a WHERE "
                    "a.person_id = p.person_id AND a.action = 'enroll')"
                )
            ).scalar_one()
            count["distinct_audited"] = conn.execute(
                text("SELECT count(DISTINCT person_id) FROM audit WHERE action = 'enroll'")
            ).scalar_one()
    finally:
        engine.dispose()
    return count


def _assert_whole(database_url: str, people: int) -> None:
    """``people`` people, each stored once with a crop, an embedding, one audit and one change-log row."""
    rows = _rows(database_url)
    assert rows == {
        "people": people,
        "reference_crops": people,
        "embeddings": people,
        "enroll_audit": people,
        "upserts": people,
        "half_written": 0,
        "distinct_audited": people,
    }


@pytest.fixture
def state(make_client):
    """A started service's state (the CLI's recognizer and gallery) and its HTTP client."""
    client = make_client()
    return client.app.state.facegate, client


def test_workers_enrol_what_the_http_path_enrols(state, lfw_people, lfw_dir, tmp_path, database_url):
    st, client = state
    root = tmp_path / "people"
    folders = _people_dir(root, lfw_people, 6, offset=40)
    folders.append(_folder(root, "nobody_here", {"grey.jpg": _grey_jpeg()}))
    folders.append(_folder(root, "broken", {"broken.jpg": b"\xff\xd8\xff\xe0 not a jpeg at all"}))
    folders.append(_folder(root, "no_photos", {"notes.txt": b"hello"}))
    folders.append(_folder(root, "not a valid id", {"a.jpg": lfw_dir / "images" / ALAN}))
    progress: list[int] = []
    report = _run(
        st.recognizer, folders, workers=2, batch_size=4, on_progress=lambda r: progress.append(r.people)
    )

    assert set(report.failed_people) == {"broken", "no_photos", "not a valid id", "nobody_here"}
    reasons = {r.person_id: r.reason.split(":")[0] for r in report.rejected}
    assert reasons["nobody_here"] == "no_face" and reasons["broken"] == "corrupt_image"
    assert reasons["no_photos"] == "no photo" and reasons["not a valid id"] == "invalid"
    assert report.enrolled + len(report.failed_people) == len(folders) and report.enrolled >= 5
    assert report.photos >= report.enrolled + 2 and report.photos_per_s > 0
    assert progress[-1] == len(folders) and progress == sorted(progress)
    _assert_whole(database_url, report.enrolled)

    # The same people through POST /enroll, one photo at a time, in the same order: the same
    # photo accepted for each, with the same embedding and the same stored canvas.
    gallery = st.recognizer.gallery
    for folder in sorted(folders[:6]):
        accepted = None
        for photo in sorted(folder.glob("*.jpg")):
            r = post_photo(
                client, "/enroll", photo, name="x", person_id=f"{folder.name}-http", allow_duplicate=True
            )
            if r.status_code == 201:
                accepted = photo
                break
        assert (accepted is None) == (folder.name in report.failed_people), folder.name
        if accepted is None:
            continue
        a, b = gallery.embedding_of(folder.name), gallery.embedding_of(f"{folder.name}-http")
        assert float(np.dot(a, b)) >= 0.9999, folder.name
        bulk, http = (gallery.export(pid)["reference_crop"] for pid in (folder.name, f"{folder.name}-http"))
        for key in ("photo_sha256", "kind", "width", "height"):
            assert bulk[key] == http[key], (folder.name, key)
        assert bulk["meta"].keys() == http["meta"].keys()
        assert bulk["meta"]["quality"] == pytest.approx(http["meta"]["quality"], abs=0.2)


def test_a_duplicate_waiting_in_the_same_batch_is_refused(state, lfw_dir, tmp_path, database_url):
    st, _ = state
    images = lfw_dir / "images"
    root = tmp_path / "people"
    folders = [
        _folder(root, "alan", {"a.jpg": images / ALAN}),
        _folder(root, "alan-again", {"a.jpg": images / ALAN_AGAIN}),  # only a duplicate: not enrolled
        _folder(root, "alan-then-venus", {"a.jpg": images / ALAN_AGAIN, "b.jpg": images / STRANGER}),
    ]
    batches: list[BatchResult] = []
    report = _run(st.recognizer, folders, workers=0, batch_size=64, on_batch=batches.append)

    assert [b.stored for b in batches] == [["alan", "alan-then-venus"]]  # one batch: the gallery was empty
    assert report.failed_people == ["alan-again"]
    refused = [(r.person_id, r.photo) for r in report.rejected if r.reason.startswith("duplicate_face")]
    assert refused == [("alan-again", "a.jpg"), ("alan-then-venus", "a.jpg")]
    assert all("matches alan (alan)" in r.reason for r in report.rejected)
    _assert_whole(database_url, 2)
    with_venus = st.recognizer.gallery.export("alan-then-venus")["reference_crop"]
    assert with_venus["photo_sha256"] == hashlib.sha256((images / STRANGER).read_bytes()).hexdigest()

    # --allow-duplicate enrols the duplicate face; --replace replaces, rather than skips (alan's
    # face now matches alan-again, so it takes --allow-duplicate too)
    again = _run(st.recognizer, folders[1:2], workers=0, allow_duplicate=True)
    assert again.enrolled == 1 and not again.failed_people
    refused = _run(st.recognizer, folders[:1], workers=0, replace=True)
    assert refused.failed_people == ["alan"] and "matches alan-again" in refused.rejected[0].reason
    replaced = _run(st.recognizer, folders[:1], workers=0, replace=True, allow_duplicate=True)
    assert replaced.enrolled == 1 and not replaced.already_enrolled
    rows = _rows(database_url)
    assert rows["people"] == rows["embeddings"] == 3 and rows["half_written"] == 0


def test_a_rerun_after_an_interruption_enrols_everyone_once(state, lfw_people, tmp_path, database_url):
    st, _ = state
    folders = _people_dir(tmp_path / "people", lfw_people, 7, offset=60)
    batches: list[BatchResult] = []

    def stop_after_two(result: BatchResult) -> None:
        batches.append(result)
        if len(batches) == 2:
            raise KeyboardInterrupt  # as Ctrl-C between two batches

    with pytest.raises(KeyboardInterrupt):
        _run(st.recognizer, folders, workers=2, batch_size=2, on_batch=stop_after_two)
    first = [pid for b in batches for pid in b.stored]
    assert len(first) == 4
    _assert_whole(database_url, 4)

    report = _run(st.recognizer, folders, workers=0, batch_size=2)
    assert sorted(report.already_enrolled) == sorted(first)
    assert report.enrolled + len(report.failed_people) == len(folders) - len(first)
    assert report.photos >= len(folders) - len(first)  # the skipped people's photos are not read again
    _assert_whole(database_url, len(first) + report.enrolled)
    assert st.recognizer.gallery.consistency_check()

    third = _run(st.recognizer, folders, workers=0)
    assert third.enrolled == 0 and len(third.already_enrolled) == len(first) + report.enrolled


def test_an_interruption_inside_a_batch_writes_none_of_it(state, lfw_people, tmp_path, database_url):
    st, _ = state
    folders = _people_dir(tmp_path / "people", lfw_people, 6, offset=80)
    people_written: list[int] = []

    def interrupt_second_batch(session, _context) -> None:
        new_people = [o for o in session.new if isinstance(o, Person)]
        if new_people:
            people_written.append(len(new_people))
            if len(people_written) == 2:  # the second batch's people are in its transaction now
                raise KeyboardInterrupt

    sessions = st.recognizer.gallery.session_factory
    event.listen(sessions, "after_flush", interrupt_second_batch)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(st.recognizer, folders, workers=0, batch_size=3)
    finally:
        event.remove(sessions, "after_flush", interrupt_second_batch)
    assert people_written == [3, 3]
    _assert_whole(database_url, 3)  # the first batch, whole; nothing of the second
    gallery = st.recognizer.gallery
    assert gallery.consistency_check() and gallery.size() == 3

    report = _run(st.recognizer, folders, workers=0, batch_size=3)
    assert len(report.already_enrolled) == 3
    _assert_whole(database_url, 3 + report.enrolled)
    assert gallery.consistency_check() and gallery.size() == 3 + report.enrolled


def test_the_command_killed_midway_and_run_again_enrols_everyone_once(lfw_people, tmp_path):
    """`facegate enroll-dir` killed (SIGKILL) after its first batches, then run again."""
    if not models_available():
        pytest.skip("the shipped models are missing")
    folders = _people_dir(tmp_path / "people", lfw_people, 10, offset=100)
    db = tmp_path / "var" / "facegate.db"
    env = {
        **os.environ,
        "FACEGATE_DATA_DIR": str(tmp_path / "var"),
        "FACEGATE_DATABASE_URL": f"sqlite:///{db}",
        "FACEGATE_ADMIN_KEY": ADMIN_KEY,
    }
    command = [
        sys.executable,
        "-c",
        "from service.cli import app; app()",
        "enroll-dir",
        str(tmp_path / "people"),
    ]
    first = subprocess.Popen(
        [*command, "--workers", "1", "--batch-size", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            try:
                if _rows(f"sqlite:///{db}")["people"] >= 2:
                    break
            except Exception:  # no database or tables yet
                pass
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)  # its worker, if still there
        except ProcessLookupError:
            pass
    before = _rows(f"sqlite:///{db}")
    assert before["half_written"] == 0 and before["people"] >= 2

    second = subprocess.run(
        [*command, "--workers", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    out = " ".join(second.stdout.split())
    assert f"skipped {before['people']} already enrolled" in out, out
    after = _rows(f"sqlite:///{db}")
    enrolled = int(out.split("enrolled ")[1].split(",")[0])
    assert after["people"] == before["people"] + enrolled
    _assert_whole(f"sqlite:///{db}", after["people"])
    rejected = int(out.split("rejected ")[1].split(" ")[0])
    assert after["people"] + rejected == len(folders)
    assert second.returncode == (1 if rejected else 0), out
    assert "photos/s" in out
