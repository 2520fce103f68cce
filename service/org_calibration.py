"""Calibration on an organisation's own labelled photos, published as a new card version.

Input: a labelled folder ``<identity>/<photo>`` (``facegate calibrate DIR``) or the same folder
as a zip archive (``POST /admin/calibrate``; one enclosing top folder is allowed). Every photo goes
through the service's own pipeline with the model in use (decode, detect, largest face, align,
embed); photos without a usable face are left out and listed. Pairs: every two photos of one
identity are a genuine pair and every two photos of different identities an impostor pair,
unless the folder holds a ``pairs.csv`` (columns ``a,b,same``, paths relative to the folder),
which then lists the pairs to use.

Output: logistic ``a, b`` fitted on those pairs, and the false-accept table measured on the
impostor pairs for the rates they can support (at least 10 impostor pairs above a threshold;
``service.calibration.measured_far_table``). Stricter rates, which a few hundred photos cannot
estimate, are not tabulated: the card says where the table stops, nothing is inherited from the
previous card, and the report says whether the table reaches the rate /identify needs for the
gallery. The result is a new model version sharing the
model's ONNX file (hard link), with the report in ``calibration_report.json``; activate it like
any version. The report gives the false-accept and false-reject rates measured on the data at
the new /verify threshold.
"""

from __future__ import annotations

import csv
import io
import logging
import lzma
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from service.calibration import FAR_GRID, ImpostorTail, fit_logistic, measured_far_table
from service.errors import FaceGateError, InvalidRequest
from service.model_card import Calibration
from service.model_registry import ModelEntry, derived_card, new_version, publish_card_version, read_entry
from service.pipeline.pipeline import FacePipeline, FaceSelection

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_PHOTOS = 5000
MAX_FILES = MAX_PHOTOS + 1  # the photos and a pairs.csv
READ_CHUNK = 1 << 20
MIN_GENUINE = 10
MIN_IMPOSTOR = 100
MIN_TAIL = 10
LOGISTIC_IMPOSTORS = 200_000


class ArchiveTooLarge(FaceGateError):
    status, code, title = 413, "archive_too_large", "Archive unpacks past the limit"


class ArchiveTooManyFiles(FaceGateError):
    status, code, title = 413, "archive_too_many_files", "Archive holds too many files"


# What zipfile and its decompressors raise on a member they cannot read: a bad CRC or local header
# (BadZipFile), damaged compressed data (zlib, lzma, bz2's OSError, EOFError), an encrypted member
# (RuntimeError) or an unknown compression method (NotImplementedError, a RuntimeError).
_UNREADABLE = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError, ValueError)


@dataclass(frozen=True)
class LabelledSet:
    photos: dict[str, tuple[str, bytes]]  # key (identity/file) -> (identity, bytes)
    pairs: list[tuple[str, str, bool]] | None  # from pairs.csv, else None: all pairs


def _parse_pairs(raw: bytes) -> list[tuple[str, str, bool]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"pairs.csv is not UTF-8 text: {exc}") from exc
    try:
        reader = csv.DictReader(io.StringIO(text))
        if not {"a", "b", "same"} <= set(reader.fieldnames or ()):
            raise InvalidRequest("pairs.csv needs the columns a, b, same")
        out = []
        for line, row in enumerate(reader, start=2):
            a, b, same = row["a"], row["b"], row["same"]
            if a is None or b is None or same is None:
                raise InvalidRequest(f"pairs.csv line {line}: a, b and same are each needed")
            same = same.strip().lower()
            if same not in ("1", "0", "true", "false", "yes", "no"):
                raise InvalidRequest(f"pairs.csv: 'same' must be 1/0 or true/false, got {row['same']!r}")
            out.append((a.strip(), b.strip(), same in ("1", "true", "yes")))
    except csv.Error as exc:
        raise InvalidRequest(f"pairs.csv is not a CSV file: {exc}") from exc
    return out


def _labelled(files: dict[str, bytes]) -> LabelledSet:
    """``files`` by relative posix path -> photos of ``<identity>/<photo>`` and an optional pairs.csv."""
    tops = {PurePosixPath(k).parts[0] for k in files}
    if len(tops) == 1 and all(len(PurePosixPath(k).parts) == 3 for k in files if not k.endswith("pairs.csv")):
        top = next(iter(tops))  # one enclosing folder: strip it
        files = {str(PurePosixPath(*PurePosixPath(k).parts[1:])): v for k, v in files.items()}
        log.debug("stripped the enclosing folder %s", top)
    photos = {}
    for key, data in files.items():
        parts = PurePosixPath(key).parts
        if len(parts) == 2 and PurePosixPath(key).suffix.lower() in PHOTO_SUFFIXES:
            photos[key] = (parts[0], data)
    if len(photos) > MAX_PHOTOS:
        raise InvalidRequest(f"{len(photos)} photos: at most {MAX_PHOTOS} per calibration")
    pairs = _parse_pairs(files["pairs.csv"]) if "pairs.csv" in files else None
    if pairs is not None:
        unknown = sorted({k for a, b, _ in pairs for k in (a, b)} - set(photos))
        if unknown:
            raise InvalidRequest(f"pairs.csv names photos that are not in the set: {unknown[:5]}")
    if not photos:
        raise InvalidRequest("no photos found: expected <identity>/<photo> (jpg, png or webp)")
    return LabelledSet(photos, pairs)


def read_zip(source: BinaryIO | bytes, max_bytes: int) -> LabelledSet:
    """The labelled set in a zip archive, unpacked member by member (blocking: call it off the
    event loop).

    At most ``MAX_FILES`` files, and at most ``max_bytes`` unpacked in all, counted on the bytes
    actually read rather than on the sizes the headers declare. A member that cannot be read (bad
    CRC, damaged data, encrypted, unknown compression method), a name held twice, or a file that is
    not a zip are refused as ``InvalidRequest``; the limits as ``ArchiveTooLarge`` and
    ``ArchiveTooManyFiles`` (413).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InvalidRequest("the archive is not a zip file") from exc
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        if len(infos) > MAX_FILES:
            raise ArchiveTooManyFiles(
                f"the archive holds {len(infos)} files: at most {MAX_FILES} (photos and a pairs.csv)",
                max_files=MAX_FILES,
            )
        files: dict[str, bytes] = {}
        left = max_bytes
        for info in infos:
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or name.name.startswith("."):
                continue
            if str(name) in files:
                raise InvalidRequest(f"the archive holds {name} more than once")
            files[str(name)] = _read_member(archive, info, left, max_bytes)
            left -= len(files[str(name)])
    return _labelled(files)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, left: int, max_bytes: int) -> bytes:
    """One member's bytes, read in chunks; refused once the archive's total passes ``max_bytes``."""
    chunks = []
    try:
        with archive.open(info) as member:
            while chunk := member.read(min(READ_CHUNK, left + 1)):
                left -= len(chunk)
                if left < 0:
                    raise ArchiveTooLarge(
                        f"the archive unpacks to more than {max_bytes} bytes (FACEGATE_CALIBRATE_MAX_BYTES)",
                        max_bytes=max_bytes,
                    )
                chunks.append(chunk)
    except _UNREADABLE as exc:
        raise InvalidRequest(f"{info.filename} cannot be read: {exc}", member=info.filename) from exc
    return b"".join(chunks)


def read_folder(root: Path) -> LabelledSet:
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and len(p.relative_to(root).parts) <= 3
    }
    return _labelled(files)


@dataclass(frozen=True)
class Embedded:
    keys: list[str]
    identities: np.ndarray
    vectors: np.ndarray  # (n, D)
    skipped: list[dict[str, str]]


def embed_set(pipeline: FacePipeline, data: LabelledSet) -> Embedded:
    keys, ids, vecs, skipped = [], [], [], []
    for key, (identity, raw) in sorted(data.photos.items()):
        try:
            photo = pipeline.process(raw, FaceSelection.largest)
        except FaceGateError as exc:
            skipped.append({"photo": key, "reason": exc.code})
            continue
        keys.append(key)
        ids.append(identity)
        vecs.append(photo.faces[0].embedding)
    dim = pipeline.embedder.card.embedding_dim
    vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
    return Embedded(keys, np.asarray(ids), vectors, skipped)


def _scores(emb: Embedded, pairs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, ImpostorTail]:
    """Genuine similarities, impostor similarities (a sample when there are very many) and the tail."""
    tail = ImpostorTail()
    n = len(emb.keys)
    if n < 2:  # no pair at all: calibrate() says so, with the photos it skipped
        return np.zeros(0), np.zeros(0), tail
    if pairs is not None:
        index = {k: i for i, k in enumerate(emb.keys)}
        usable = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
        sims = np.array([float(emb.vectors[i] @ emb.vectors[j]) for i, j, _ in usable])
        same = np.array([s for _, _, s in usable], dtype=bool)
        tail.add(sims[~same])
        return sims[same], sims[~same], tail
    genuine = []
    for ident in np.unique(emb.identities):
        rows = emb.vectors[emb.identities == ident]
        sim = rows @ rows.T
        genuine.append(sim[np.triu_indices(len(rows), k=1)])
    tail.add_within(emb.vectors, emb.identities)
    i, j = rng.integers(0, n, LOGISTIC_IMPOSTORS), rng.integers(0, n, LOGISTIC_IMPOSTORS)
    keep = emb.identities[i] != emb.identities[j]
    if tail.total <= LOGISTIC_IMPOSTORS:  # few enough: use every impostor pair exactly
        iu, ju = np.triu_indices(n, k=1)
        keep_all = emb.identities[iu] != emb.identities[ju]
        i, j, keep = iu[keep_all], ju[keep_all], np.ones(int(keep_all.sum()), dtype=bool)
    impostor = np.einsum("ij,ij->i", emb.vectors[i[keep]], emb.vectors[j[keep]])
    return np.concatenate(genuine) if genuine else np.zeros(0), impostor, tail


def calibrate(emb: Embedded, data: LabelledSet, target_far: float, seed: int = 0) -> dict:
    """The new calibration and its report (FAR and FRR measured at the new thresholds)."""
    genuine, impostor, tail = _scores(emb, data.pairs, np.random.default_rng(seed))
    if len(genuine) < MIN_GENUINE or tail.total < MIN_IMPOSTOR:
        raise InvalidRequest(
            f"{len(genuine)} genuine and {tail.total} impostor pairs with a usable face: calibration needs "
            f"at least {MIN_GENUINE} and {MIN_IMPOSTOR} (several photos of each of a few dozen people)",
            genuine_pairs=len(genuine),
            impostor_pairs=tail.total,
            skipped=emb.skipped,
        )
    a, b = fit_logistic(
        np.concatenate([genuine, impostor]), np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    )
    if a <= 0:
        raise InvalidRequest("on these photos genuine pairs do not score higher than impostor pairs")
    estimated, note = measured_far_table(tail, FAR_GRID, MIN_TAIL)
    if not estimated:
        raise InvalidRequest(note, genuine_pairs=len(genuine), impostor_pairs=tail.total)
    source = "pairs.csv" if data.pairs is not None else "all pairs of a labelled folder"
    calibration = Calibration(
        a=round(a, 6),
        b=round(b, 6),
        far_table=estimated,
        data=(
            f"organisation's own photos ({source}): {len(emb.keys)} photos of {len(set(emb.identities))} "
            f"people, {len(genuine)} genuine pairs; {note}"
        ),
        genuine_pairs=len(genuine),
        impostor_pairs=tail.total,
    )

    def measured(similarity: float) -> dict:
        far = tail.count_above(similarity) / tail.total
        frr = float(np.mean(genuine < similarity))
        return {"similarity": round(similarity, 6), "score": round(calibration.score(similarity), 6),
                "far": far, "frr": frr}  # fmt: skip

    sim = calibration.similarity_at_far(target_far)
    return {
        "calibration": calibration,
        "report": {
            "a": calibration.a,
            "b": calibration.b,
            "target_far": target_far,
            "threshold": measured(sim),
            "far": tail.count_above(sim) / tail.total,
            "frr": float(np.mean(genuine < sim)),
            "far_estimated_down_to": estimated[-1].far,
            "thresholds": [{"target_far": p.far, **measured(p.similarity)} for p in estimated],
            "photos": len(data.photos),
            "photos_used": len(emb.keys),
            "people": len(set(emb.identities.tolist())),
            "genuine_pairs": len(genuine),
            "impostor_pairs": tail.total,
            "skipped": emb.skipped,
            "pairs": source,
        },
    }


def calibrate_and_publish(
    pipeline: FacePipeline, entry: ModelEntry, data: LabelledSet, models_dir: Path, target_far: float
) -> dict:
    """Calibrate ``entry``'s model on ``data`` and publish the result as a new version."""
    emb = embed_set(pipeline, data)
    result = calibrate(emb, data, target_far)
    version = new_version(entry.version, "cal")
    report = {"version": version, "based_on": entry.version, **result["report"]}
    card = derived_card(
        entry.card,
        version,
        calibration=result["calibration"].model_dump(mode="json"),
        org_calibration={k: v for k, v in report.items() if k not in ("thresholds", "skipped")},
    )
    folder = publish_card_version(models_dir, entry, card, {"calibration_report.json": report})
    read_entry(folder, verify_hash=True)
    log.info(
        "calibrated %s on %d photos -> %s: FAR %.4g FRR %.4g at target FAR %g",
        entry.version,
        report["photos_used"],
        version,
        report["far"],
        report["frr"],
        target_far,
    )
    return report
