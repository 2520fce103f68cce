"""Package a training run as a FaceGate model: checkpoint -> ONNX (parity-checked) + model card.

The backbone is rebuilt from the checkpoint; the export is checked on real aligned crops of
the run's cache (validation identities first); a provisional calibration is fitted on the
run's identity-disjoint validation split (logistic ``a, b`` on sampled pairs, the false-accept
table from every cross-identity validation pair). ``facegate-train calibrate`` replaces it with
the full calibration on held-out data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.model_card import Alignment, Calibration
from training.backbones import Backbone, build_backbone
from training.config import RunConfig
from training.data.dataset import FaceCache, FaceDataset
from training.data.splits import split_by_identity
from training.engine.checkpoint import find_checkpoint, load_checkpoint
from training.engine.validation import PairValidator
from training.evaluation.calibration import ImpostorTail, make_calibration
from training.export.onnx_export import export_onnx, write_model_card

log = logging.getLogger(__name__)


def backbone_from_checkpoint(state: dict[str, Any]) -> Backbone:
    spec = state["backbone"]
    model = build_backbone(spec["name"], embedding_dim=int(spec["embedding_dim"]), **spec["kwargs"])
    model.load_state_dict(state["model"])
    if spec.get("alignment_template"):  # the template the run's crops were cut with, as recorded
        model.alignment_template = tuple((float(x), float(y)) for x, y in spec["alignment_template"])
    return model.eval()


def _validation_calibration(
    backbone: Backbone, cfg: RunConfig, cache: FaceCache, val: np.ndarray, min_tail: int
) -> Calibration:
    dataset = FaceDataset(cache, val)
    validator = PairValidator(dataset, max(cfg.data.val_pairs, 1), cfg.train.seed)
    if not validator.usable:
        raise ValueError("the run has no validation pairs to calibrate on (data.val_fraction = 0?)")
    emb = validator.embed(backbone, torch.device("cpu"), cfg.train.val_batch_size)
    sims = (emb[validator.i] * emb[validator.j]).sum(axis=1)
    tail = ImpostorTail()
    tail.add_within(emb, dataset.labels[validator.rows])
    data = (
        f"provisional, from the training run's identity-disjoint validation split of {cache.root}: "
        f"{int(validator.same.sum())} genuine + {int((~validator.same).sum())} impostor sampled pairs "
        f"(logistic a, b); far_table from every cross-identity pair of the {len(validator.rows)} images used"
    )
    return make_calibration(sims[validator.same], sims[~validator.same], tail, data, min_tail=min_tail)


def export_run(
    run_dir: Path,
    out_dir: Path,
    *,
    name: str,
    version: str,
    license: str,
    training_data: Sequence[dict[str, str]],
    num_check: int = 64,
    min_tail: int = 10,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Export the last checkpoint of ``run_dir`` into ``out_dir`` (model.onnx + model.json)."""
    ckpt = find_checkpoint(Path(run_dir), Path(run_dir))
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    state = load_checkpoint(ckpt)
    cfg = RunConfig.model_validate(state["config"])
    backbone = backbone_from_checkpoint(state)
    cache = FaceCache.open(cfg.data.cache)
    split = split_by_identity(cache.labels, cfg.data.val_fraction, cfg.train.seed)
    check_rows = np.concatenate([split.val, split.train])[:num_check]
    check = np.ascontiguousarray(cache.crops[np.sort(check_rows)])
    export_onnx(backbone, backbone.input_size, Path(out_dir), check)
    calibration = _validation_calibration(backbone, cfg, cache, split.val, min_tail)
    alignment = Alignment(
        size=backbone.input_size,
        template=[(float(x), float(y)) for x, y in backbone.alignment_template],
        notes="MTCNN 5 points -> similarity transform (service.pipeline.align.align_face)",
    )
    provenance = (
        f"trained by facegate-train: backbone {cfg.model.backbone}, loss {cfg.loss.name}, "
        f"{state['epoch']} epoch(s), seed {cfg.train.seed}, from checkpoint {ckpt}"
    )
    return write_model_card(
        Path(out_dir),
        name=name,
        version=version,
        alignment=alignment,
        calibration=calibration,
        evaluation=evaluation or {},
        license=license,
        training_data=training_data,
        provenance=provenance,
        embedding_dim=backbone.embedding_dim,
    )
