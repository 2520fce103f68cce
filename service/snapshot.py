"""Start-up from an index snapshot instead of rebuilding the index from the database.

A snapshot is one file per model version (``<folder>/<version>.snapshot``) holding every
collection's FAISS index (FAISS's own format: ids and vectors), who each embedding id is
(person id and name), and the change-log position the gallery reflected when it was taken: the
replicator's applied position, read before the gallery's write lock is taken, so every change up
to it is in the snapshot (later local writes may be too; replaying them is harmless).

At start-up (``IndexSnapshots.start``) the snapshot is loaded and only the changes logged after
its position are replayed (``SyncedGallery.refresh``); the gallery is then checked cheaply (the
count of stored embeddings for the version against the index). Any doubt means a full rebuild
from the database (``Gallery.load``), with the reason logged:

* ``missing``: no snapshot for this model version;
* ``corrupt``: a bad magic number, header or checksum (CRC-32 per section: against accidents;
  an encrypted snapshot is also authenticated by AES-GCM), or a file that does not open;
* ``other model``: taken for another model version or another ONNX file (sha256);
* ``ahead``: its position is past the database's newest change (a database restored from an
  older backup, or another database);
* ``count``: after the replay the index holds another number of embeddings than the database
  (a change made behind the change log's back).

With ``FACEGATE_ENCRYPTION_KEYS`` set, the file is sealed like a stored template (AES-GCM,
associated data naming the model version): the snapshot holds every embedding in clear
otherwise. Files are written aside and renamed into place, so replicas sharing one folder (one
PostgreSQL) read whole snapshots only and can start from a snapshot another replica wrote.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.gallery.cipher import TemplateCipher
from service.gallery.gallery import Gallery, GalleryImage
from service.gallery.synced import SyncedGallery
from service.periodic import Periodic
from service.replication import ChangeFeed

log = logging.getLogger(__name__)

MAGIC = b"FACEGATE-INDEX-SNAPSHOT\n"
FORMAT = 1
SEP = "\x00"  # never in a person id or a name (both refuse NUL)


class SnapshotUnusable(Exception):
    """Why a snapshot cannot be used; ``reason`` is one of the module docstring's words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class StartResult:
    source: str  # "snapshot" or "rebuild"
    reason: str | None  # why not from a snapshot (None when from one)
    seconds: float
    replayed: int = 0  # people refreshed from the change log after loading the snapshot
    position: int = 0  # the snapshot's change-log position


def _context(version: str) -> bytes:
    return b"index-snapshot:" + version.encode()


def encode(image: GalleryImage, version: str, model_sha256: str, position: int, dim: int) -> bytes:
    sections: list[tuple[str, bytes | memoryview]] = [
        (f"index:{n}", b) for n, b in sorted(image.indexes.items())
    ]
    sections += [
        ("ids", np.ascontiguousarray(image.ids, dtype="<i8").tobytes()),
        ("person_ids", SEP.join(image.person_ids).encode()),
        ("names", SEP.join(image.names).encode()),
    ]
    header = {
        "format": FORMAT,
        "model_version": version,
        "model_sha256": model_sha256,
        "dim": dim,
        "position": position,
        "count": len(image.ids),
        "created_at": time.time(),
        "sections": [[name, len(data), zlib.crc32(data)] for name, data in sections],
    }
    head = json.dumps(header).encode()
    return b"".join([len(head).to_bytes(8, "big"), head, *(data for _, data in sections)])


def decode(payload: bytes, version: str, model_sha256: str, dim: int) -> tuple[GalleryImage, int]:
    """(the image, its change-log position), or SnapshotUnusable."""
    try:
        size = int.from_bytes(payload[:8], "big")
        header = json.loads(payload[8 : 8 + size])
        offset = 8 + size
        # sections stay views into the payload (no copies: at 10^6 256-d embeddings a snapshot is
        # ~2.3 GB, and every copy held at once adds that much to the start-up peak)
        parts: dict[str, memoryview] = {}
        view = memoryview(payload)
        for name, length, crc in header["sections"]:
            data = view[offset : offset + length]
            offset += length
            if len(data) != length or zlib.crc32(data) != crc:
                raise SnapshotUnusable("corrupt", f"section {name} does not match its checksum")
            parts[name] = data
        if offset != len(payload) or header["format"] != FORMAT:
            raise SnapshotUnusable("corrupt", "unexpected length or format")
    except SnapshotUnusable:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotUnusable("corrupt", f"the header does not read: {exc}") from None
    if header["model_version"] != version or header["model_sha256"] != model_sha256 or header["dim"] != dim:
        raise SnapshotUnusable(
            "other model",
            f"taken for {header['model_version']} ({header['model_sha256'][:12]}, {header['dim']}-d), "
            f"not {version} ({model_sha256[:12]}, {dim}-d)",
        )
    ids = np.frombuffer(parts["ids"], "<i8").astype(np.int64)
    person_ids = bytes(parts["person_ids"]).decode().split(SEP) if len(ids) else []
    names = bytes(parts["names"]).decode().split(SEP) if len(ids) else []
    indexes = {k.removeprefix("index:"): v for k, v in parts.items() if k.startswith("index:")}
    if not len(ids) == len(person_ids) == len(names) == header["count"]:
        raise SnapshotUnusable("corrupt", "the people listed do not match the count")
    return GalleryImage(indexes, ids, person_ids, names), int(header["position"])


class IndexSnapshots:
    """The snapshot files of one folder (see the module docstring)."""

    def __init__(self, folder: Path, cipher: TemplateCipher | None = None) -> None:
        self.folder = Path(folder)
        self.cipher = cipher or TemplateCipher()
        self._save_lock = threading.Lock()

    def path(self, version: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9._-]", "_", version) + ".snapshot")

    def save(self, gallery: Gallery, position: int, model_sha256: str) -> Path:
        """Write the gallery's snapshot at ``position`` (written aside, then renamed in place)."""
        image = gallery.image()
        payload = encode(image, gallery.model_version, model_sha256, position, gallery.index.dim)
        sealed = self.cipher.seal(payload, _context(gallery.model_version))
        target = self.path(gallery.model_version)
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._save_lock:
            aside = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(aside, "wb") as f:
                f.write(MAGIC)
                f.write(sealed)
                f.flush()
                os.fsync(f.fileno())
            os.replace(aside, target)
        log.info(
            "index snapshot of %s: %d embeddings at change %d (%.1f MB)",
            gallery.model_version,
            len(image.ids),
            position,
            (len(sealed) + len(MAGIC)) / 1e6,
        )
        return target

    def discard(self) -> int:
        """Remove every snapshot of the folder (after a restore: they describe another database);
        returns how many."""
        found = list(self.folder.glob("*.snapshot")) if self.folder.is_dir() else []
        for path in found:
            path.unlink(missing_ok=True)
        return len(found)

    def read(self, version: str, model_sha256: str, dim: int) -> tuple[GalleryImage, int]:
        path = self.path(version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SnapshotUnusable("missing", f"no snapshot at {path}") from None
        except OSError as exc:
            raise SnapshotUnusable("corrupt", f"{path} cannot be read: {exc}") from None
        if not data.startswith(MAGIC):
            raise SnapshotUnusable("corrupt", f"{path} is not an index snapshot")
        try:
            payload = self.cipher.open(memoryview(data)[len(MAGIC) :], _context(version))
        except Exception as exc:  # a wrong key or an altered file (AES-GCM refuses both)
            raise SnapshotUnusable("corrupt", f"{path} does not open: {exc}") from None
        del data  # the sealed file is not needed once opened
        return decode(payload, version, model_sha256, dim)

    def start(self, gallery: SyncedGallery, feed: ChangeFeed, model_sha256: str) -> StartResult:
        """Load the gallery from its snapshot and replay the changes since, else rebuild it."""
        started = time.perf_counter()
        try:
            image, position = self.read(gallery.model_version, model_sha256, gallery.index.dim)
            newest = feed.position()
            if position > newest:
                raise SnapshotUnusable(
                    "ahead", f"taken at change {position}, the database's newest is {newest}"
                )
            try:
                gallery.adopt(image)
            except ValueError as exc:
                raise SnapshotUnusable("corrupt", str(exc)) from None
            people, _ = feed.people_since(position)
            gallery.refresh(people)
            stored = gallery.stored_count()
            if stored != len(gallery.index):
                raise SnapshotUnusable(
                    "count",
                    f"the index holds {len(gallery.index)} embeddings after the replay, the database {stored}",
                )
        except SnapshotUnusable as exc:
            level = logging.INFO if exc.reason == "missing" else logging.WARNING
            log.log(level, "index of %s rebuilt from the database: snapshot %s", gallery.model_version, exc)
            gallery.load()
            return StartResult("rebuild", exc.reason, time.perf_counter() - started)
        seconds = time.perf_counter() - started
        log.info(
            "index of %s loaded from its snapshot at change %d and %d people replayed in %.2f s",
            gallery.model_version,
            position,
            len(people),
            seconds,
        )
        return StartResult("snapshot", None, seconds, len(people), position)


class SnapshotSaver:
    """Saves the current gallery's snapshot every ``interval`` seconds when the database's change
    log has moved since the last one (0: only when asked, e.g. at shutdown)."""

    def __init__(
        self,
        snapshots: IndexSnapshots,
        current: Callable[[], tuple[Gallery, str]],
        position: Callable[[], int],
        feed: ChangeFeed,
        interval: float,
    ) -> None:
        self.snapshots = snapshots
        self.current = current  # (the gallery answering now, its model's sha256)
        self.position = position  # the change-log position the galleries have applied
        self.feed = feed
        self.interval = interval
        self._saved: tuple[str, int] | None = None  # (model version, the log's newest id then)
        self._worker = Periodic("facegate-index-snapshot", interval, self.save, "saving the index snapshot")

    def save(self, force: bool = False) -> Path | None:
        gallery, sha = self.current()
        newest = self.feed.position()
        if not force and self._saved == (gallery.model_version, newest):
            return None
        position = self.position()  # before the write lock: every change up to it is applied
        path = self.snapshots.save(gallery, position, sha)
        self._saved = (gallery.model_version, newest)
        return path

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()
