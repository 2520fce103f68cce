"""Experiment B: partial fine-tuning of dlib's ResNet (models/dlib) on cached activations.

The frozen part of the network (everything before the last ``TRAINABLE_UNITS`` residual units) is
run ONCE over every training and test crop (aligned through the service's pipeline on the dlib
card's template, detections shared with experiment A) and its output cached as float16
(``var/science/dlib-act-*.npz``, never committed). Each run then trains only the last residual
units and the fc layer, starting from dlib's weights, on those tensors: the same loss objects,
sampler, scheduler feeding and statistics as experiment A (``training.science.adapter``).

Batch-norm does not arise: dlib's "affine" layers are fixed per-channel scale and shift.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.model_card import load_card
from service.pipeline.align import align_face
from training.data.prepare import assumed_landmarks
from training.data.sampler import PKSampler
from training.engine.objective import BatchStats, build_objective
from training.engine.optim import build_optimizer, build_scheduler
from training.evaluation.embedding_cache import PipelineConfig, centred_landmarks, detect_images, read_rgb
from training.science.adapter import AdapterBudget, _grad_norm, class_spread, scheme_config
from training.science.embeddings import CELEBA_MIN_FACE, celeba_keys, lfw_keys

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
TRAINABLE_UNITS = (
    1  # dlib's last residual unit (256, downsampling 4x4 -> 1x1) + fc: ~4 MFLOP per image and step
)


@dataclass(frozen=True)
class FinetuneBudget(AdapterBudget):
    epochs: int = 10
    lr: float = 1e-4
    noise: float = 0.0


def dlib_network() -> nn.Module:
    from training.backbones import build_backbone

    return build_backbone("dlib_resnet", dat_path="auto", template="models/dlib")


class Head(nn.Module):
    """The trainable end of dlib's network: last residual units, global average pool, fc, L2."""

    def __init__(self, net: Any) -> None:  # a training.dlib DlibResNet
        super().__init__()
        self.units = copy.deepcopy(net.units[-TRAINABLE_UNITS:])
        self.fc = copy.deepcopy(net.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.units(x).mean(dim=(2, 3))), dim=1)


@torch.no_grad()
def prefix(net: Any, crops: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    x = (x - net.mean_rgb) / 256.0
    x = F.max_pool2d(F.relu(net.aff1(net.conv1(x))), 3, 2)
    return net.units[:-TRAINABLE_UNITS](x)


def cache_activations(which: str, data: Path, out: Path, batch: int = 32) -> Path:
    """Run the frozen prefix over one image set ("celeba" or "lfw"); cached, resumable by file."""
    path = out / f"dlib-act-{which}.npz"
    if path.is_file():
        return path
    torch.set_num_threads(1)
    if which == "celeba":
        root, (keys, names) = data / "celeba-aligned", celeba_keys(data / "celeba-aligned")
        cfg = PipelineConfig(min_face_size=CELEBA_MIN_FACE)
    else:
        root, (keys, names) = data / "lfw" / "images", lfw_keys(data / "lfw")
        cfg = PipelineConfig()
    det = detect_images(root, keys, REPO / "models", out / "detections", cfg)
    card = load_card(REPO / "models/dlib", verify_hash=False)
    template, size = np.asarray(card.alignment.template, dtype=np.float64), card.alignment.size
    net = dlib_network().eval()
    acts = []
    t0 = time.time()
    for start in range(0, len(keys), batch):
        crops = []
        for i in range(start, min(len(keys), start + batch)):
            rgb = read_rgb(root / keys[i], cfg.max_pixels)
            h, w = rgb.shape[:2]
            if det.found[i]:
                pts = det.landmarks[i]
            else:
                pts = assumed_landmarks(w, h, "celeba") if which == "celeba" else centred_landmarks(w, h)
            crops.append(align_face(rgb, pts, template, size))
        acts.append(prefix(net, np.stack(crops)).numpy().astype(np.float16))
        if (start // batch) % 20 == 0:
            log.info("%s: %d/%d images, %.0f s", which, start + len(crops), len(keys), time.time() - t0)
    uniq = {n: i for i, n in enumerate(dict.fromkeys(names))}
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(keys), labels=np.array([uniq[n] for n in names]), acts=np.concatenate(acts))
    tmp.replace(path)
    return path


def train_head(scheme: str, seed: int, acts: np.ndarray, labels: np.ndarray, budget: FinetuneBudget,
               net: nn.Module) -> tuple[Head, list[dict[str, Any]]]:  # fmt: skip
    cfg = scheme_config(scheme, budget, seed)
    x_all = torch.from_numpy(acts)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    torch.manual_seed(seed)
    head = Head(net)  # dlib's weights: identical start for every scheme and seed
    objective = build_objective(cfg, int(y_all.max()) + 1, 128)
    sampler = PKSampler(y_all.numpy(), cfg.sampler.p, cfg.sampler.k, seed, min_images=cfg.data.min_images)
    params = list(head.parameters()) + list(objective.parameters())
    optimizer = build_optimizer(params, cfg.optim)
    lr_sched = build_scheduler(optimizer, cfg.optim, len(sampler), cfg.train.epochs)
    rows: list[dict[str, Any]] = []
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        stats = BatchStats(torch.device("cpu"))
        head.train()
        grads = []
        for idx in sampler:
            ix = torch.as_tensor(idx)
            xb, yb = x_all[ix].float(), y_all[ix]
            parts = [head(xb) for _ in range(objective.views)]  # no augmentation: NT-Xent is not in B
            out = objective(parts, yb)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            grads.append(_grad_norm(params))
            optimizer.step()
            lr_sched.step()
            stats.update(out, parts[0], yb, objective)
        row = stats.summary()
        row["margin"] = objective.margin_value
        objective.step_epoch(row["easy_share"])
        head.eval()
        with torch.no_grad():
            emb = torch.cat([head(x_all[s : s + 1024].float()) for s in range(0, len(x_all), 1024)])
        intra, inter = class_spread(emb, y_all)
        g = np.asarray(grads)
        row.update(epoch=epoch, margin_next=objective.margin_value, grad_norm_mean=float(g.mean()),
                   grad_norm_median=float(np.median(g)), grad_norm_p90=float(np.quantile(g, 0.9)),
                   update_norm_mean=float("nan"), intra_class_var=intra, inter_class_var=inter,
                   steps=len(g), epoch_s=time.perf_counter() - t0)  # fmt: skip
        rows.append(row)
    return head, rows


def finetune_job(scheme: str, seed: int, data_dir: str, budget: dict) -> dict:
    from bench.science import _record  # the record layout lives with the driver
    from training.evaluation.pairs import read_lfw_pairs
    from training.science.evaluate import score

    torch.set_num_threads(1)
    b = FinetuneBudget(**budget)
    out = REPO / "var/science"
    train = np.load(out / "dlib-act-celeba.npz")
    test = np.load(out / "dlib-act-lfw.npz")
    net = dlib_network()
    t0 = time.time()
    head, rows = train_head(scheme, seed, train["acts"], train["labels"], b, net)
    t1 = time.time()
    with torch.no_grad():
        x = torch.from_numpy(test["acts"])
        emb = torch.cat([head(x[s : s + 1024].float()) for s in range(0, len(x), 1024)]).numpy()
    pairs = read_lfw_pairs(Path(data_dir) / "lfw/pairs.txt")
    res = score(emb, [str(k) for k in test["keys"]], test["labels"], pairs)
    return _record("B", scheme, seed, res, rows, t1 - t0, time.time() - t1,
                   {"network": "models/dlib (dlib ResNet, weights from the .dat)",
                    "trainable": f"last {TRAINABLE_UNITS} residual units + fc", **asdict(b)})  # fmt: skip


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="cache dlib's frozen-prefix activations (experiment B)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for which in ("celeba", "lfw"):
        cache_activations(which, a.data, REPO / "var/science")
