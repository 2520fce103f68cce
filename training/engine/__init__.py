"""The training engine: the loop, the objective (loss + miner + margin), optimiser and schedule,
checkpoints, the distributed set-up (torchrun), the allocator setting, the per-epoch metrics log and
validation during training. ``train(cfg)`` runs one configured run.
"""

from __future__ import annotations

from training.engine.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from training.engine.distributed import DistEnv, resolve_device
from training.engine.loop import Run, RunResult, setup_run, train, train_epoch
from training.engine.objective import BatchStats, Objective, build_objective

__all__ = [
    "BatchStats",
    "DistEnv",
    "Objective",
    "Run",
    "RunResult",
    "build_objective",
    "find_checkpoint",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "setup_run",
    "train",
    "train_epoch",
]
