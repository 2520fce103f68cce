"""Read an aligned-crop cache (see ``training.data.prepare``) as a labelled dataset.

``FaceCache.open(dir)`` memory-maps ``crops.npy`` and reads the manifest; only rows with status
"ok" become samples, labelled by contiguous integers in sorted identity order. ``FaceDataset``
is a torch map-style dataset over a subset of the cache with a batched ``__getitems__`` (one
fancy-index read of the memmap per batch), which ``DataLoader`` uses with a batch sampler.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.prepare import MANIFEST_FIELDS, PrepareOptions, build_cache
from training.data.sources import list_images


@dataclass(frozen=True)
class FaceCache:
    root: Path
    crops: np.ndarray  # uint8 [N, H, W, 3], memory-mapped
    labels: np.ndarray  # int64 [N]
    identities: list[str]  # label -> identity name
    manifest: list[dict[str, str]]  # every source image, failures included
    meta: dict[str, Any]

    @classmethod
    def open(cls, root: Path) -> FaceCache:
        root = Path(root)
        for name in ("crops.npy", "manifest.csv", "meta.json"):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root}/{name} missing: not a prepared cache")
        meta = json.loads((root / "meta.json").read_text())
        crops = np.load(root / "crops.npy", mmap_mode="r")
        with (root / "manifest.csv").open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
                raise ValueError(f"{root}/manifest.csv columns {reader.fieldnames} != {MANIFEST_FIELDS}")
            manifest = list(reader)
        ok = sorted((int(r["index"]), r["identity"]) for r in manifest if r["status"] == "ok")
        if [i for i, _ in ok] != list(range(len(crops))):
            raise ValueError(f"{root}: manifest has {len(ok)} ok rows but crops.npy {len(crops)} crops")
        identities = sorted({name for _, name in ok})
        lookup = {name: i for i, name in enumerate(identities)}
        labels = np.array([lookup[name] for _, name in ok], dtype=np.int64)
        return cls(root, crops, labels, identities, manifest, meta)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.meta["size"][0]), int(self.meta["size"][1])

    @property
    def template(self) -> np.ndarray:
        return np.asarray(self.meta["template"], dtype=np.float32)

    def failures(self) -> list[dict[str, str]]:
        return [r for r in self.manifest if r["status"] != "ok"]


def prepare_folder(
    root: Path, out_dir: Path, opts: PrepareOptions, labels_csv: Path | None = None, **kw: Any
) -> FaceCache:
    """List, detect, align and cache a ``<identity>/<image>`` folder (or a labels.csv); open it."""
    build_cache(list_images(root, labels_csv), out_dir, opts, **kw)
    return FaceCache.open(out_dir)


class FaceDataset(Dataset):
    """Samples ``indices`` of a cache: item -> (uint8 [H, W, 3] tensor, label)."""

    def __init__(self, cache: FaceCache, indices: np.ndarray | None = None) -> None:
        self.cache = cache
        everything = np.arange(len(cache.labels))
        self.indices = everything if indices is None else np.asarray(indices, dtype=np.int64)
        self.labels = cache.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the cache's path, not a pickled copy of the memory-mapped crops
        state = dict(self.__dict__)
        state["cache"] = self.cache.root
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["cache"] = FaceCache.open(state["cache"])
        self.__dict__.update(state)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        return torch.from_numpy(np.array(self.cache.crops[j])), int(self.cache.labels[j])

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # read the memmap in file order
        crops = np.empty((len(rows), *self.cache.crops.shape[1:]), dtype=np.uint8)
        crops[order] = self.cache.crops[rows[order]]
        return torch.from_numpy(crops), torch.from_numpy(self.cache.labels[rows])


def collate_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``__getitems__`` already returns the batch; the DataLoader's collate is the identity."""
    return batch
