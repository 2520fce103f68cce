"""PNG figures for verification results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.evaluation.metrics import roc_curve  # noqa: E402


def save_roc_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """ROC (TAR vs FAR, log FAR) and DET (FRR vs FAR, log-log) for each named ``(scores, labels)``."""
    fig, (roc_ax, det_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, (scores, labels) in curves.items():
        far, tar, _ = roc_curve(scores, labels)
        n_imp = int((~np.asarray(labels, dtype=bool)).sum())
        floor = 0.5 / n_imp
        roc_ax.plot(np.maximum(far, floor), tar, label=name, lw=1.5)
        n_gen = int(np.asarray(labels, dtype=bool).sum())
        det_ax.plot(np.maximum(far, floor), np.maximum(1.0 - tar, 0.5 / n_gen), label=name, lw=1.5)
    roc_ax.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC")
    det_ax.set(
        xscale="log", yscale="log", xlabel="false accept rate", ylabel="false reject rate", title="DET"
    )
    for ax in (roc_ax, det_ax):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_score_histogram(scores: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> Path:
    """Genuine and impostor score distributions (densities) on one axis."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    bins = np.linspace(scores.min(), scores.max(), 80)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.hist(scores[labels], bins=bins.tolist(), density=True, alpha=0.6, label=f"genuine ({labels.sum()})")
    ax.hist(
        scores[~labels], bins=bins.tolist(), density=True, alpha=0.6, label=f"impostor ({(~labels).sum()})"
    )
    ax.set(xlabel="score", ylabel="density", title=title or "pair scores")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
