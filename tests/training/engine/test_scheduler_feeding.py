"""How the training loop feeds the margin scheduler, checked through the real loop (``train``).

With augmentation off and a learning rate too small to move a weight, every epoch's embeddings are
a fixed function of the batches, so the share of easy triplets the scheduler must read can be
recomputed here independently: every valid (anchor, positive, negative) triplet of every batch
the sampler drew, at the margin the epoch trained with, counted in float64 by plain loops. The
logged share must equal it, and the margin must grow exactly after the epochs whose share reached
the threshold. Each of these fails for a loop that passes the active ratio, passes a constant 0,
measures the share at margin 0, or counts only the triplets the miner picked.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.synthetic_faces import make_cache, tiny_overrides
from training.config import load_config
from training.data.augment import to_float_nchw
from training.data.dataset import FaceDataset
from training.data.sampler import PKSampler
from training.data.splits import split_by_identity
from training.engine.loop import train

EPOCHS = 3
MARGIN0, STEP = 0.8, 0.05  # an untrained tiny net on synthetic faces: ~80 % easy at 0.8, 100 % at 0
NO_AUGMENT = [f"augment.{k}=0.0" for k in ("flip", "brightness", "contrast", "saturation", "shift", "scale")]


def _config(cache: Path, out: Path, miner: str, threshold: float):
    sets = [
        *tiny_overrides(cache, out, epochs=EPOCHS),
        *NO_AUGMENT,
        "optim.lr=1e-30",  # AdamW moves no float32 weight: the embeddings stay fixed
        "optim.weight_decay=0.0",
        "loss.name=triplet",
        "loss.distance=euclidean",
        f"miner.name={miner}",
        "margin.name=difficulty",
        f'margin.kwargs={{"initial": {MARGIN0}, "threshold": {threshold}, "step": {STEP}}}',
        "data.val_pairs=0",
    ]
    return load_config(None, sets)


def _easy_share_by_hand(cfg, margin: float, epoch: int) -> float:
    """Share of easy triplets over every valid triplet of the epoch's batches, recomputed."""
    from training.backbones import build_backbone
    from training.data.dataset import FaceCache

    cache = FaceCache.open(cfg.data.cache)
    torch.manual_seed(cfg.train.seed)
    model = build_backbone(cfg.model.backbone, embedding_dim=cfg.model.embedding_dim, **cfg.model.kwargs)
    split = split_by_identity(cache.labels, cfg.data.val_fraction, cfg.train.seed)
    data = FaceDataset(cache, split.train)
    sampler = PKSampler(data.labels, cfg.sampler.p, cfg.sampler.k, cfg.train.seed,
                        small_identities=cfg.data.small_identities, min_images=cfg.data.min_images)  # fmt: skip
    sampler.set_epoch(epoch)
    model.train()  # as in the loop: batch-norm statistics of the batch itself
    easy = valid = 0
    with torch.no_grad():
        for batch in sampler:
            crops, labels = data.__getitems__(batch)
            emb = model(to_float_nchw(crops)).double().numpy()
            lab = labels.numpy()
            n = len(lab)
            for a in range(n):
                for p in range(n):
                    if p == a or lab[p] != lab[a]:
                        continue
                    d_ap = np.linalg.norm(emb[a] - emb[p])
                    for q in range(n):
                        if lab[q] == lab[a]:
                            continue
                        valid += 1
                        easy += d_ap - np.linalg.norm(emb[a] - emb[q]) + margin <= 0
    return easy / valid


def _rows(out: Path) -> list[dict[str, float]]:
    with (out / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("sched"), n_ids=12, per_id=5).root


@pytest.mark.parametrize("miner", ["batch_all", "batch_hard", "semi_hard"])
def test_logged_easy_share_is_over_every_valid_triplet_at_the_margin_in_use(cache: Path, tmp_path: Path,
                                                                            miner: str) -> None:  # fmt: skip
    cfg = _config(cache, tmp_path / "run", miner, threshold=1.0)  # 1.0: the margin stays, epochs compare
    train(cfg)
    rows = _rows(tmp_path / "run")
    assert [r["margin"] for r in rows] == [MARGIN0] * EPOCHS
    for epoch, row in enumerate(rows, 1):
        expected = _easy_share_by_hand(cfg, MARGIN0, epoch)
        at_zero = _easy_share_by_hand(cfg, 0.0, epoch)
        assert abs(expected - at_zero) > 0.02  # the data tell the margins apart
        assert row["easy_share"] == pytest.approx(expected, abs=2e-3), (epoch, row)


def test_margin_grows_exactly_after_epochs_whose_share_reached_the_threshold(
    cache: Path, tmp_path: Path
) -> None:
    probe = _config(cache, tmp_path / "probe", "batch_all", threshold=1.0)
    share1 = _easy_share_by_hand(probe, MARGIN0, 1)
    assert 0.05 < share1 < 0.95 and abs(share1 - 0.5) > 0.05  # active ratio and share differ
    # threshold just under the first epoch's share: epoch 1 must raise the margin
    for threshold, moves in ((share1 - 0.01, True), (share1 + 0.01, False)):
        out = tmp_path / f"thr{threshold:.3f}"
        cfg = _config(cache, out, "batch_all", threshold=threshold)
        train(cfg)
        rows = _rows(out)
        margin = MARGIN0
        for epoch, row in enumerate(rows, 1):
            assert row["margin"] == pytest.approx(margin), (threshold, epoch, rows)
            share = _easy_share_by_hand(cfg, margin, epoch)
            assert row["easy_share"] == pytest.approx(share, abs=2e-3)
            if share >= threshold:
                margin += STEP
        assert (rows[1]["margin"] > MARGIN0) is moves
        state = torch.load(out / "checkpoints/last.pt", weights_only=False)["objective"]["_extra_state"][
            "margin"
        ]
        assert state["value"] == pytest.approx(margin)
