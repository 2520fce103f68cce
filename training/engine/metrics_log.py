"""The per-epoch CSV log of a run (``metrics.csv``), append-only, rewound on resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

COLUMNS = (
    "epoch",
    "loss",
    "active_ratio",  # share of the loss's terms (pairs/triplets/anchors) with non-zero loss
    "easy_share",  # share of all valid batch triplets with zero triplet loss (margin below)
    "margin",  # the triplet margin used this epoch (or the reference margin of easy_share)
    "genuine_dist_mean",  # Euclidean distance of L2-normalised embeddings, same-identity batch pairs
    "genuine_dist_std",
    "impostor_dist_mean",
    "impostor_dist_std",
    "val_accuracy",  # best-threshold accuracy on pairs from the identity-disjoint val split
    "val_threshold",  # the cosine similarity of that best threshold
    "lr",
    "images_per_s",  # backbone inputs (augmented views) per second, all ranks, data loading included
    "epoch_s",
)


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def rewind(self, last_epoch: int) -> None:
        """Keep only rows of epochs <= ``last_epoch`` (a resumed run re-logs what follows)."""
        rows = [r for r in self.read() if int(r["epoch"]) <= last_epoch]
        self._write(rows)

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown metrics column(s): {sorted(unknown)}")
        new = not self.path.is_file()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})

    def _write(self, rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
