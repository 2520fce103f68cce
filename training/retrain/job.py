"""``facegate-train retrain``: adapt the model in use to the organisation's data, gate, publish.

Two methods. ``adapter`` (the default, ``training.retrain.adapter_job``): a residual adapter learnt
on frozen embeddings of the model in use (any ONNX model), gated by a paired bootstrap over
held-out identities and LFW View 1. ``finetune`` (below, ``--method finetune``): the whole torch
network fine-tuned; kept for models with torch weights, refused by its gate in every measured run.

The ``finetune`` method:

1. The model in use: ``models_dir/active.json`` (the version the service activated last), else
   ``FACEGATE_MODEL``; its torch weights (``training.retrain.weights``), checked against its ONNX.
2. Data (``training.retrain.data``): the gallery's stored aligned crops (``FACEGATE_DATABASE_URL``)
   and any ``--extra`` labelled folders; an identity-disjoint held-out split.
3. Fine-tuning with the training loop (``training.engine.loop.train``): triplet loss with batch-all
   mining and the margin scheduler (default) or circle loss; P x K batches where a person with one
   photo contributes K augmented views of it (their positives). Under ``torchrun`` the same
   command trains with DDP: rank 0 prepares the data and evaluates, every rank trains.
4. Evaluation of the current and the candidate model on the same held-out pairs, and on LFW
   View 1's test pairs when ``FACEGATE_DATA`` holds LFW (``training.retrain.gate``).
5. The gate: publish only when no metric is worse than the current model's by more than
   ``--tolerance``. Published: a new version folder (``model.onnx``, ``model.json`` recalibrated
   on the held-out pairs, ``weights.pt``, ``report.json``, plots), written aside and renamed into
   place. Refused: the current model stays; ``retrain-reports/<stamp>/report.json`` says why.

Exit codes: 0 published, 3 refused by the gate, 2 nothing usable to train on (too few people,
no torch weights for the model in use).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.model_card import file_sha256, write_card
from service.model_registry import ModelEntry, derived_card, new_version, publish, startup_entry, utc_stamp
from service.settings import DEFAULT_MODEL
from training.config import RunConfig, apply_overrides
from training.data.augment import Augment
from training.engine.distributed import barrier, init_distributed, shutdown
from training.engine.loop import train
from training.export.onnx_export import MODEL_FILE, export_onnx
from training.retrain.adapter import AdapterOptions
from training.retrain.calibration import candidate_calibration
from training.retrain.data import Crops, folder_crops, gallery_crops, held_out_split, write_cache
from training.retrain.gate import gate, held_out_pairs, lfw_view1_scores, pair_metrics, reasons, score_pairs
from training.retrain.weights import MIN_PARITY, WEIGHTS_FILE, current_weights, parity, save_weights

log = logging.getLogger(__name__)

EXIT_PUBLISHED, EXIT_UNUSABLE, EXIT_REFUSED = 0, 2, 3
LOSSES: dict[str, dict[str, Any]] = {
    "triplet": {
        "loss": {"name": "triplet", "distance": "euclidean", "reducer": "nonzero_mean"},
        "miner": {"name": "batch_all"},
        "margin": {"name": "difficulty", "kwargs": {"initial": 0.2, "threshold": 0.95, "step": 0.05}},
    },
    "circle": {"loss": {"name": "circle", "kwargs": {"m": 0.25, "gamma": 64.0}}},
}


@dataclass(frozen=True)
class RetrainOptions:
    models_dir: Path
    database_url: str
    model: str = DEFAULT_MODEL  # the start-up folder when models_dir/active.json names no version
    extra: tuple[Path, ...] = ()
    data_dir: Path | None = None  # holds lfw/ for the LFW View 1 check
    lfw: bool = True
    work_dir: Path | None = None
    loss: str = "triplet"
    epochs: int = 5
    lr: float = 1e-5
    k: int = 4
    held_out: float = 0.2
    tolerance: float = 0.01
    seed: int = 0
    overrides: tuple[str, ...] = ()
    version: str | None = None
    dlib_dat: Path | None = None
    device: str = "auto"
    min_people: int = 8
    method: str = "adapter"  # adapter | finetune
    adapter: AdapterOptions = AdapterOptions()
    selftrain_dir: Path | None = None  # FACEGATE_SELFTRAIN_DIR: accepted probes (service.selftrain)
    selftrain_retention_days: float = 30.0  # FACEGATE_SELFTRAIN_RETENTION_DAYS


METHODS = ("adapter", "finetune")


@dataclass(frozen=True)
class RetrainResult:
    status: str  # published | refused | unusable
    exit_code: int
    version: str | None
    reasons: list[str] = field(default_factory=list)
    report: Path | None = None


class Unusable(RuntimeError):
    """Nothing to train on, or no torch weights for the model in use."""


def _config(opts: RetrainOptions, work: Path, weights, template, n_people: int, world: int) -> dict[str, Any]:
    if opts.loss not in LOSSES:
        raise Unusable(f"unknown loss {opts.loss!r}; valid: {', '.join(LOSSES)}")
    p = max(2, min(16, n_people // world))
    return apply_overrides(
        {
            "data": {
                "cache": str(work / "cache"),
                "val_fraction": 0.0,
                "val_pairs": 0,
                "min_images": 1,
                "small_identities": "replace",
                "batches_per_epoch": max(1, -(-n_people // (p * world))),
            },
            "model": {
                "backbone": "card_aligned",
                "embedding_dim": weights.embedding_dim,
                "init": str(work / "init.pt"),
                "kwargs": {"base": weights.name, "template": template, "base_kwargs": weights.kwargs},
            },
            **LOSSES[opts.loss],
            "sampler": {"p": p, "k": opts.k},
            "optim": {
                "name": "adamw",
                "lr": opts.lr,
                "weight_decay": 5e-4,
                "warmup_epochs": 0.0,
                "min_lr_ratio": 0.1,
            },
            "train": {
                "epochs": opts.epochs,
                "seed": opts.seed,
                "out_dir": str(work / "run"),
                "device": opts.device,
                "progress": False,
            },
        },  # fmt: skip
        list(opts.overrides),
    )


def _prepare(opts: RetrainOptions, work: Path, world: int) -> dict[str, Any]:
    """Rank 0: read the data, check the weights, write the cache and the plan every rank trains from."""
    import torch

    entry = startup_entry(opts.models_dir, opts.model)
    card = entry.card
    parts = [gallery_crops(opts.database_url, card)]
    extras = []
    for i, folder in enumerate(opts.extra):
        crops, counts = folder_crops(folder, card, opts.models_dir, work / f"extra-{i}")
        parts.append(crops)
        extras.append(counts)
    data = Crops.concat(parts, card.alignment.size)
    people = sorted(set(data.identities.tolist()))
    if len(people) < opts.min_people:
        raise Unusable(
            f"{len(people)} people with a usable photo: retraining needs at least {opts.min_people}"
        )
    held = held_out_split(data.identities, opts.held_out, opts.seed)
    train_data, held_data = data.take(np.flatnonzero(~held)), data.take(np.flatnonzero(held))
    weights = current_weights(entry, opts.dlib_dat)
    template = [list(map(float, p)) for p in card.alignment.template]
    agreement = parity(weights.build(template), entry, data.crops[:32])
    if agreement < MIN_PARITY:
        raise Unusable(
            f"the torch weights ({weights.source}) do not reproduce model {entry.version}: cosine {agreement:.5f}"
        )
    torch.save(weights.state, work / "init.pt")
    write_cache(work / "cache", train_data, card)
    np.savez(work / "held_out.npz", crops=held_data.crops, identities=held_data.identities)
    n_train = len(set(train_data.identities.tolist()))
    return {
        "status": "ready",
        "parent": entry.version,
        "parent_folder": str(entry.folder),
        "config": _config(opts, work, weights, template, n_train, world),
        "weights": {"source": weights.source, **weights.spec(), "parity_min_cosine": round(agreement, 6)},
        "data": {
            "gallery_people": len(parts[0]),
            "extra_folders": extras,
            "people": len(people),
            "crops": len(data),
            "train": {"people": n_train, "crops": len(train_data)},
            "held_out": {"people": len(set(held_data.identities.tolist())), "crops": len(held_data)},
        },
    }


def _write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return path


def run(opts: RetrainOptions) -> RetrainResult:
    """The whole job (``finetune``: every rank calls it under torchrun; rank 0 decides and reports)."""
    if opts.method not in METHODS:
        return RetrainResult(
            "unusable", EXIT_UNUSABLE, None, [f"unknown method {opts.method!r}; valid: {', '.join(METHODS)}"]
        )
    if opts.method == "adapter":
        return _run_adapter(opts)
    return _run_finetune(opts)


def _run_adapter(opts: RetrainOptions) -> RetrainResult:
    from training.retrain.adapter_job import run_adapter_job

    status, version, why, report = run_adapter_job(
        opts.models_dir, opts.database_url, opts.model, opts.extra, opts.selftrain_dir, opts.data_dir, opts.lfw,
        opts.work_dir or opts.models_dir / ".retrain-work", opts.adapter, opts.version, opts.min_people,
        opts.selftrain_retention_days,
    )  # fmt: skip
    code = {"published": EXIT_PUBLISHED, "refused": EXIT_REFUSED, "unusable": EXIT_UNUSABLE}[status]
    if status == "unusable":
        log.error("retraining not possible: %s", why[0])
    return RetrainResult(status, code, version, why, report)


def _run_finetune(opts: RetrainOptions) -> RetrainResult:
    env = init_distributed(opts.device)
    work = opts.work_dir or opts.models_dir / ".retrain-work"
    try:
        error: Exception | None = None
        if env.is_main:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            try:
                plan = _prepare(opts, work, env.world_size)
            except Unusable as exc:
                plan = {"status": "unusable", "reasons": [str(exc)]}
            except Exception as exc:  # told to the other ranks, then raised here
                plan, error = {"status": "failed", "reasons": [repr(exc)]}, exc
            _write(work / "plan.json", plan)
        barrier(env)
        if error is not None:
            raise error
        plan = json.loads((work / "plan.json").read_text())
        if plan["status"] == "failed":
            raise RuntimeError(f"rank 0 failed to prepare the data: {plan['reasons'][0]}")
        if plan["status"] == "unusable":
            log.error("retraining not possible: %s", plan["reasons"][0])
            return RetrainResult("unusable", EXIT_UNUSABLE, None, plan["reasons"])
        cfg = RunConfig.model_validate(plan["config"])
        start = time.perf_counter()
        result = train(cfg, env)
        plan["training"] = {"seconds": round(time.perf_counter() - start, 1), "world_size": env.world_size,
                            "epochs": result.rows}  # fmt: skip
        if env.is_main:
            try:
                outcome = _evaluate_and_publish(opts, plan, cfg, result.backbone, work)
            except Exception as exc:
                _write(work / "outcome.json", {"failed": repr(exc)})
                error = exc
            else:
                _write(work / "outcome.json", asdict(outcome))
        barrier(env)
        if error is not None:
            raise error
        done = json.loads((work / "outcome.json").read_text())
        if "failed" in done:
            raise RuntimeError(f"rank 0 failed to evaluate the candidate: {done['failed']}")
        report = done.pop("report")
        return RetrainResult(**done, report=Path(report) if report else None)
    finally:
        shutdown(env)


def _evaluate_and_publish(
    opts: RetrainOptions, plan: dict, cfg: RunConfig, backbone, work: Path
) -> RetrainResult:
    from service.model_registry import read_entry
    from training.evaluation.plots import save_roc_det, save_score_histogram

    parent: ModelEntry = read_entry(Path(plan["parent_folder"]))
    version = opts.version or new_version(parent.version, "ft")
    held = np.load(work / "held_out.npz")
    held_data = Crops(held["crops"], held["identities"], [])
    candidate = work / "candidate"
    backbone = backbone.cpu().eval()
    export_onnx(backbone, parent.card.input.size, candidate, held_data.crops[:64])
    write_card(derived_card(parent.card, version, sha256=file_sha256(candidate / MODEL_FILE)), candidate)

    pairs = held_out_pairs(held_data, Augment(**cfg.augment.model_dump()), opts.seed)
    scores = {"current": score_pairs(parent.folder, pairs), "candidate": score_pairs(candidate, pairs)}
    evaluation = {k: {"held_out": pair_metrics(s, pairs.same)} for k, s in scores.items()}
    plots = work / "plots"
    curves = {
        f"held-out {k} ({v})": (s, pairs.same) for (k, s), v in zip(scores.items(), (parent.version, version))
    }
    data_dir = opts.data_dir
    if opts.lfw and data_dir is not None and (data_dir / "lfw" / "pairsDevTest.txt").is_file():
        cache = work.parent / ".retrain-eval-cache"  # detections are shared between runs
        for name, folder in (("current", parent.folder), ("candidate", candidate)):
            s, labels = lfw_view1_scores(folder, data_dir, opts.models_dir, cache)
            evaluation[name]["lfw_view1_test"] = pair_metrics(s, labels, folds=10)
            curves[f"LFW View 1 {name}"] = (s, labels)
    ok, checks = gate(evaluation["current"], evaluation["candidate"], opts.tolerance)
    save_roc_det(curves, plots / "roc_det.png")
    save_score_histogram(
        scores["candidate"], pairs.same, plots / "held_out_scores.png", title=f"{version} held-out"
    )
    report = {
        "status": "published" if ok else "refused",
        "version": version if ok else None,
        "candidate_version": version,
        "parent": parent.version,
        "created_at": utc_stamp(),
        **{k: plan[k] for k in ("weights", "data", "training")},
        "config": plan["config"],
        "held_out_pairs": pairs.kinds,
        "evaluation": evaluation,
        "gate": {"tolerance": opts.tolerance, "passed": ok, "checks": checks},
        "notes": "held-out genuine pairs are mostly two augmented views of one crop (one photo per person)",
    }
    why = reasons(checks, opts.tolerance)
    try:
        calibration = candidate_calibration(
            scores["candidate"], pairs.same, "organisation's held-out gallery crops"
        )
    except ValueError as exc:  # too few held-out impostor pairs to measure any false-accept rate
        ok, why = False, [*why, f"cannot calibrate the candidate: {exc}"]
    if not ok:
        folder = opts.models_dir / "retrain-reports" / f"{utc_stamp()}-refused"
        shutil.copytree(plots, folder / "plots")
        path = _write(folder / "report.json", {**report, "reasons": why})
        log.warning("candidate %s refused, %s stays: %s", version, parent.version, "; ".join(why))
        return RetrainResult("refused", EXIT_REFUSED, None, why, path)

    card = derived_card(
        parent.card,
        version,
        sha256=file_sha256(candidate / MODEL_FILE),
        calibration=calibration.model_dump(mode="json"),
        evaluation={"retrain": evaluation["candidate"], "parent_on_same_data": evaluation["current"]},
        provenance=f"fine-tuned from {parent.version} by facegate-train retrain ({cfg.loss.name} loss)",
        training_data=[*parent.card.training_data, {"name": "the organisation's gallery (reference crops) and "
                       "extra labelled photos", "terms": "the organisation's own data"}],
    )  # fmt: skip

    def write(folder: Path) -> None:
        shutil.copy2(candidate / MODEL_FILE, folder / MODEL_FILE)
        write_card(card, folder)
        save_weights(folder / WEIGHTS_FILE, _weights_spec(plan), backbone, parent.version)
        shutil.copytree(plots, folder / "plots")
        _write(folder / "report.json", report)

    folder = publish(opts.models_dir, version, write)
    log.info("published %s (fine-tuned from %s) in %s", version, parent.version, folder)
    return RetrainResult("published", EXIT_PUBLISHED, version, [], folder / "report.json")


def _weights_spec(plan: dict):
    from training.retrain.weights import TorchWeights

    w = plan["weights"]
    return TorchWeights(w["name"], int(w["embedding_dim"]), dict(w["kwargs"]), {}, w["source"])
