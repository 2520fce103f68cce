"""Checkpoints: one file per run folder (``checkpoints/last.pt``), written atomically every epoch."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LAST = "last.pt"


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save_checkpoint(state: dict[str, Any], out_dir: Path, keep_epoch: bool = False) -> Path:
    """Write ``state`` to ``<out_dir>/checkpoints/last.pt`` (and ``epoch_NNN.pt`` if asked)."""
    folder = checkpoint_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LAST
    tmp = folder / f".{LAST}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated last.pt
    if keep_epoch:
        epoch_path = folder / f"epoch_{int(state['epoch']):03d}.pt"
        torch.save(state, epoch_path)
    log.debug("checkpoint %s (epoch %s)", path, state.get("epoch"))
    return path


def find_checkpoint(resume: Path | bool, out_dir: Path) -> Path | None:
    """``True``: the run folder's last.pt if any; a path: that file (or its last.pt if a folder)."""
    if resume is False:
        return None
    if resume is True:
        path = checkpoint_dir(out_dir) / LAST
        return path if path.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = checkpoint_dir(path) / LAST if (checkpoint_dir(path) / LAST).is_file() else path / LAST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)


def load_backbone_weights(model: torch.nn.Module, path: Path) -> None:
    """Initialise ``model`` from a training checkpoint (its ``model`` entry) or a bare state_dict."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model.load_state_dict(state)
