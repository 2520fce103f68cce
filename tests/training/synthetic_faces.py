"""Synthetic identity folders and aligned caches for fast training tests (no detector needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.backbones import arcface_template
from training.data.dataset import FaceCache, prepare_folder
from training.data.prepare import PrepareOptions

SIZE = 32  # crop side of the tiny test backbone

TINY_MODEL = [
    "model.backbone=resnet",
    "model.embedding_dim=16",
    'model.kwargs={"layers": [1, 1], "widths": [8, 16], "input_size": 32}',
]


def make_identity_folder(root: Path, n_ids: int = 12, per_id: int = 5, seed: int = 0) -> Path:
    """``root/idNN/k.png``: each identity a random 8x8 colour pattern plus per-image noise."""
    rng = np.random.default_rng(seed)
    for ident in range(n_ids):
        proto = rng.integers(0, 256, (8, 8, 3)).astype(np.float32)
        folder = root / f"id{ident:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_id):
            img = np.clip(proto + rng.normal(0, 20, proto.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).resize((40, 48), Image.Resampling.NEAREST).save(folder / f"{k}.png")
    return root


def make_cache(tmp: Path, n_ids: int = 12, per_id: int = 5, seed: int = 0) -> FaceCache:
    """An aligned cache of a synthetic folder, mapped onto the 32x32 template without detection."""
    images = make_identity_folder(tmp / "images", n_ids, per_id, seed)
    opts = PrepareOptions(size=(SIZE, SIZE), template=arcface_template((SIZE, SIZE)), assume_aligned="always")
    return prepare_folder(images, tmp / "cache", opts)


def tiny_overrides(cache: Path, out_dir: Path, epochs: int = 1) -> list[str]:
    return [
        f"data.cache={cache}",
        "data.val_fraction=0.25",
        "data.val_pairs=50",
        *TINY_MODEL,
        "sampler.p=3",
        "sampler.k=4",
        f"train.epochs={epochs}",
        f"train.out_dir={out_dir}",
        "train.progress=false",
        "train.threads=1",
        "optim.lr=0.01",
    ]
