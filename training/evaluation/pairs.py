"""Verification pairs: LFW's official pair lists and seeded pairs sampled from a folder of identities.

An image is named by its path relative to an image root (``<identity>/<file>``), so that the
embedding cache, the pair lists and the labels all use the same key.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class Pair:
    """Two images (keys relative to the image root), whether they show the same person, and a fold."""

    a: str
    b: str
    same: bool
    fold: int = 0


@dataclass(frozen=True)
class PairSet:
    pairs: tuple[Pair, ...]
    n_folds: int
    source: str

    @property
    def keys(self) -> list[str]:
        """Every image named by a pair, each once, in first-seen order."""
        return list(dict.fromkeys(k for p in self.pairs for k in (p.a, p.b)))

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def folds(self) -> np.ndarray:
        return np.array([p.fold for p in self.pairs], dtype=np.int64)


def lfw_key(name: str, index: int) -> str:
    return f"{name}/{name}_{index:04d}.jpg"


def read_lfw_pairs(path: Path) -> PairSet:
    """Parse LFW's ``pairs.txt`` (View 2: ``10 300``) or ``pairsDevTrain/Test.txt`` (View 1: ``1100``).

    Each fold is ``n`` matched lines ``name i j`` followed by ``n`` mismatched lines
    ``name1 i name2 j``; View 1 files are one fold.
    """
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path} is empty")
    header = [int(v) for v in lines[0]]
    n_folds, per_side = (header[0], header[1]) if len(header) == 2 else (1, header[0])
    body = lines[1:]
    if len(body) != n_folds * 2 * per_side:
        raise ValueError(f"{path}: header says {n_folds} x 2 x {per_side} pairs, found {len(body)} lines")
    pairs: list[Pair] = []
    for i, tok in enumerate(body):
        fold = i // (2 * per_side)
        if len(tok) == 3:
            pairs.append(Pair(lfw_key(tok[0], int(tok[1])), lfw_key(tok[0], int(tok[2])), True, fold))
        elif len(tok) == 4:
            pairs.append(Pair(lfw_key(tok[0], int(tok[1])), lfw_key(tok[2], int(tok[3])), False, fold))
        else:
            raise ValueError(f"{path}:{i + 2}: expected 3 or 4 fields, got {tok}")
    return PairSet(tuple(pairs), n_folds, path.name)


def list_identities(root: Path) -> dict[str, list[str]]:
    """``identity -> sorted image keys`` from ``root/labels.csv`` (``path,identity``) or ``<id>/<image>``."""
    labels = root / "labels.csv"
    out: dict[str, list[str]] = {}
    if labels.is_file():
        with labels.open(newline="") as f:
            for row in csv.DictReader(f):
                out.setdefault(str(row["identity"]), []).append(row["path"])
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            files = [f"{d.name}/{f.name}" for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
            if files:
                out[d.name] = files
    if not out:
        raise ValueError(
            f"no labelled images under {root} (expected labels.csv or <identity>/<image> folders)"
        )
    return {k: sorted(v) for k, v in sorted(out.items())}


def sample_pairs(
    identities: dict[str, list[str]],
    rng: np.random.Generator,
    per_fold: int = 300,
    n_folds: int = 10,
) -> PairSet:
    """LFW-style identity-disjoint folds sampled from ``identities``, reproducible for a seeded ``rng``.

    Identities are shuffled and split into ``n_folds`` groups; each fold gets up to ``per_fold``
    distinct matched pairs (two images of one identity) and as many mismatched pairs (one image
    of each of two identities of the fold). Fewer matched pairs are drawn when the fold has too
    few identities with two or more images.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    names = sorted(identities)
    order = rng.permutation(len(names))
    groups = [[names[i] for i in order[f::n_folds]] for f in range(n_folds)]
    pairs: list[Pair] = []
    for fold, group in enumerate(groups):
        multi = [n for n in group if len(identities[n]) >= 2]
        genuine: set[tuple[str, str]] = set()
        budget = per_fold * 20
        while multi and len(genuine) < per_fold and budget > 0:
            budget -= 1
            imgs = identities[multi[rng.integers(len(multi))]]
            i, j = sorted(rng.choice(len(imgs), size=2, replace=False).tolist())
            genuine.add((imgs[i], imgs[j]))
        impostor: set[tuple[str, str]] = set()
        budget = per_fold * 20
        while len(group) >= 2 and len(impostor) < len(genuine) and budget > 0:
            budget -= 1
            n1, n2 = (group[k] for k in rng.choice(len(group), size=2, replace=False))
            a = identities[n1][rng.integers(len(identities[n1]))]
            b = identities[n2][rng.integers(len(identities[n2]))]
            impostor.add((min(a, b), max(a, b)))
        pairs += [Pair(a, b, True, fold) for a, b in sorted(genuine)]
        pairs += [Pair(a, b, False, fold) for a, b in sorted(impostor)]
    if not any(p.same for p in pairs) or all(p.same for p in pairs):
        raise ValueError("could not sample both matched and mismatched pairs: too few identities or images")
    return PairSet(tuple(pairs), n_folds, f"sampled {per_fold}/fold x {n_folds} folds")
