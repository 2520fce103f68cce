"""Two-process DDP training on CPU with gloo: both ranks finish, rank 0 logs, weights agree."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.training.synthetic_faces import make_cache, tiny_overrides
from training.config import load_config
from training.engine.distributed import DistEnv
from training.engine.loop import train

REPO = Path(__file__).resolve().parents[3]


def _worker(rank: int, world: int, init_file: str, overrides: list[str], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = load_config(None, overrides)
        result = train(cfg, DistEnv(rank, world, torch.device("cpu")))
        torch.save({"state": result.backbone.state_dict(), "rows": result.rows}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_agree_and_only_rank0_writes(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, n_ids=16, per_id=4)
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(cache.root, run_dir, epochs=2) + ["margin.name=difficulty"]
    mp.spawn(_worker, args=(2, str(tmp_path / "rdzv"), overrides, str(tmp_path)), nprocs=2, join=True)

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["state"].keys() == r1["state"].keys()
    for key, value in r0["state"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # batch-norm statistics are per rank (no SyncBN); DDP broadcasts rank 0's
        assert torch.equal(value, r1["state"][key]), key
    assert [row["epoch"] for row in r1["rows"]] == [1, 2]
    # the loss and its statistics are computed on the gathered batch: the same on both ranks
    assert r0["rows"][-1]["loss"] == pytest.approx(r1["rows"][-1]["loss"])
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # written once, by rank 0
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "config.json").is_file()


def test_torchrun_runs_the_same_command(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, n_ids=16, per_id=4)
    run_dir = tmp_path / "run"
    sets = [a for o in tiny_overrides(cache.root, run_dir) for a in ("--set", o)]
    config = tmp_path / "cfg.json"
    config.write_text("{}")  # everything comes from the overrides
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "training.cli", "train", str(config), *sets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1 of 2" in proc.stderr  # the process group was joined inside main()
    with (run_dir / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
