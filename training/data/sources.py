"""Where the training images are: a folder of ``<identity>/<image>`` or a ``labels.csv``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class ImageRecord:
    path: Path  # absolute
    identity: str


def list_images(root: Path, labels_csv: Path | None = None) -> list[ImageRecord]:
    """Every image with its identity, in a stable (sorted) order.

    With ``labels_csv`` (columns ``path,identity``; paths relative to ``root``) the CSV decides;
    otherwise each sub-folder of ``root`` is one identity. A ``labels.csv`` inside ``root`` is not
    used unless passed explicitly.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if labels_csv is not None:
        return _from_csv(root, Path(labels_csv))
    records = [
        ImageRecord(path=p.resolve(), identity=d.name)
        for d in sorted(root.iterdir())
        if d.is_dir()
        for p in sorted(d.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not records:
        raise ValueError(f"no <identity>/<image> files found under {root}")
    return records


def _from_csv(root: Path, labels_csv: Path) -> list[ImageRecord]:
    with labels_csv.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "identity"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{labels_csv} lacks column(s) {sorted(missing)}; expected path,identity")
        rows = [(r["path"], r["identity"]) for r in reader]
    records = [ImageRecord(path=(root / p).resolve(), identity=str(i)) for p, i in rows]
    return sorted(records, key=lambda r: (r.identity, str(r.path)))
