"""``facegate-train retrain`` (default ``--method adapter``): adapt the model in use to the organisation.

1. The model in use (``models_dir/active.json``, else ``FACEGATE_MODEL``): any ONNX model with a
   card; no torch weights are needed, its network stays frozen.
2. The organisation's photos as embeddings of that model (``training.retrain.adapter``): each
   enrolled person's reference crop (the gallery) and its augmented views; ``--extra`` labelled
   folders ``<identity>/<photo>`` (a folder named like an enrolled ``person_id`` adds photos of that
   person; another name is a new identity whose first photo plays its reference); and, when the
   service keeps them (``FACEGATE_SELFTRAIN_DIR``, off by default), probe crops it accepted at a
   very high score (``service.selftrain``).
3. An identity-disjoint split, a residual adapter trained on the training identities
   (contrastive loss by default), and the gate (``training.retrain.gate.statistical_gate``):
   open-set identification at FPIR 1 % on the held-out identities before and after, published
   only when the 95 % paired-bootstrap interval of the improvement is above zero, and LFW View 1
   test accuracy (when ``FACEGATE_DATA`` holds LFW) shows no drop.
4. Published: a new version ``<parent>-ad.<UTC>``: one ONNX graph (the parent's graph, then the
   adapter and the L2 norm; parity with torch checked), its card recalibrated on the held-out
   organisation photos by the service's organisation calibration (``service.org_calibration``, as
   ``facegate calibrate``: card ``calibration`` and ``org_calibration``, ``calibration_report.json``),
   ``adapter.pt`` and ``report.json``. A service watching the models folder
   (``FACEGATE_WATCH_MODELS``) re-embeds its gallery in the background and switches.
   Refused: ``retrain-reports/<UTC>-refused/report.json`` says which test decided.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import FaceGateError
from service.model_card import ModelCard
from service.model_registry import ModelEntry, derived_card, new_version, publish, startup_entry, utc_stamp
from service.pipeline.embed import Embedder
from training.data.augment import Augment
from training.export.adapter_export import MIN_PARITY, parity, write_adapted_model
from training.retrain.adapter import (
    REFERENCE,
    AdapterOptions,
    LfwPairs,
    OrgEmbeddings,
    Outcome,
    train_and_gate,
    transform,
)
from training.retrain.calibration import org_calibration_field, organisation_calibration
from training.retrain.data import Crops, folder_crops, gallery_crops
from training.retrain.gate import augmented_views

log = logging.getLogger(__name__)

VIEWS = 2  # augmented views of each reference crop (one call of gate.augmented_views)
CALIBRATION_REPORT = "calibration_report.json"  # the name service.org_calibration publishes its report under


def org_embeddings(
    embedder: Embedder, references: Crops, extra: Crops, selftrain: Crops, seed: int
) -> tuple[OrgEmbeddings, np.ndarray]:
    """References (+ first photos of extra identities not enrolled), their augmented views, the
    extra and self-training photos, embedded by the model in use; also the reference crops."""
    enrolled = set(references.identities.tolist())
    first: dict[str, int] = {}
    for i, ident in enumerate(extra.identities.tolist()):
        if ident not in enrolled and ident not in first:
            first[ident] = i
    new_refs = np.array(sorted(first.values()), dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(extra)), new_refs)
    ref_crops = (
        np.concatenate([references.crops, extra.crops[new_refs]]) if len(new_refs) else references.crops
    )
    ref_ids = np.concatenate([references.identities, extra.identities[new_refs]]).astype(str)
    views = augmented_views(ref_crops, Augment(), seed) if len(ref_crops) else ref_crops
    parts = [
        (ref_crops, ref_ids, REFERENCE),
        (views, np.concatenate([ref_ids] * VIEWS), "view"),
        (extra.crops[rest], extra.identities[rest], "extra"),
        (selftrain.crops, selftrain.identities, "selftrain"),
    ]
    rows = [
        OrgEmbeddings(_embed(embedder, c), np.asarray(i, str), np.full(len(c), s))
        for c, i, s in parts
        if len(c)
    ]
    return OrgEmbeddings.concat(rows), ref_crops


def _embed(embedder: Embedder, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([embedder.embed(crops[i : i + batch]) for i in range(0, len(crops), batch)])


def lfw_view1_pairs(model_dir: Path, data_dir: Path, models_dir: Path, cache_dir: Path) -> LfwPairs | None:
    """LFW View 1 test pairs embedded by the model in use (cached), or None without LFW."""
    from training.evaluation.embedding_cache import embed_images
    from training.evaluation.pairs import read_lfw_pairs

    path = data_dir / "lfw" / "pairsDevTest.txt"
    if not path.is_file():
        return None
    pairs = read_lfw_pairs(path)
    emb = embed_images(data_dir / "lfw" / "images", pairs.keys, model_dir, models_dir, cache_dir)
    idx = emb.index()
    a = np.array([idx[p.a] for p in pairs.pairs])
    b = np.array([idx[p.b] for p in pairs.pairs])
    return LfwPairs(emb.embeddings[a], emb.embeddings[b], np.asarray(pairs.labels, bool))


def adapted_card(
    parent: ModelCard, version: str, outcome: Outcome, calibration: dict, data: str,
    org_calibration: dict | None = None,
) -> ModelCard:  # fmt: skip
    opts_note = (
        f"residual adapter {parent.embedding_dim}->{outcome.adapter.fc1.out_features}->{parent.embedding_dim}"
    )
    return derived_card(
        parent,
        version,
        calibration=calibration,
        org_calibration=org_calibration,  # the parent's (a facegate calibrate version's) is not this model's
        evaluation={"retrain": outcome.summary()},
        provenance=(
            f"{parent.name} {parent.version} (frozen, its ONNX graph unchanged) followed by a {opts_note} "
            f"and L2 norm, trained by facegate-train retrain on {data}"
        ),
        training_data=[
            *parent.training_data,
            {"name": f"adapter: {data}", "terms": "the organisation's own data"},
        ],
    )


def publish_adapter(
    models_dir: Path, parent: ModelEntry, outcome: Outcome, version: str, data: str, parity_crops: np.ndarray,
    report: dict[str, Any], target_far: float | None = None,
) -> Path:  # fmt: skip
    """Recalibrate on the held-out organisation photos with the service's organisation calibration
    (``training.retrain.calibration.organisation_calibration``: ``service.org_calibration.calibrate``,
    at ``target_far``, default ``FACEGATE_TARGET_FAR``), write the composed model, check parity, publish.
    The folder holds ``calibration_report.json`` like a ``facegate calibrate`` version."""
    if target_far is None:
        from service.settings import Settings

        target_far = Settings().target_far
    calibration, cal_report = organisation_calibration(
        outcome.split.held_out, transform(outcome.adapter), version, parent.version, target_far
    )
    card = adapted_card(parent.card, version, outcome, calibration.model_dump(mode="json"), data,
                        org_calibration_field(cal_report))  # fmt: skip

    def write(folder: Path) -> None:
        write_adapted_model(parent.folder, parent.card, outcome.adapter, folder, card)
        agreement = parity(folder, parent.folder, outcome.adapter, parity_crops)
        if agreement < MIN_PARITY:
            raise RuntimeError(f"the composed ONNX graph does not reproduce torch: cosine {agreement:.6f}")
        (folder / "report.json").write_text(
            json.dumps({**report, "parity_min_cosine": round(agreement, 7)}, indent=2, default=str) + "\n"
        )
        (folder / CALIBRATION_REPORT).write_text(json.dumps(cal_report, indent=2, default=str) + "\n")

    return publish(models_dir, version, write)


def refused_report(models_dir: Path, report: dict[str, Any]) -> Path:
    folder = models_dir / "retrain-reports" / f"{utc_stamp()}-refused"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def run_adapter_job(
    models_dir: Path, database_url: str, model: str, extra: tuple[Path, ...], selftrain_dir: Path | None,
    data_dir: Path | None, lfw: bool, work: Path, adapter: AdapterOptions, version: str | None, min_people: int,
    selftrain_retention_days: float = 30.0,
) -> tuple[str, str | None, list[str], Path | None]:  # fmt: skip
    """(status, version, reasons, report) with status published | refused | unusable."""
    from service.selftrain import read_accepted

    entry = startup_entry(models_dir, model)
    card = entry.card
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    references = gallery_crops(database_url, card)
    extras, counts = [], []
    for i, folder in enumerate(extra):
        crops, c = folder_crops(folder, card, models_dir, work / f"extra-{i}")
        extras.append(crops)
        counts.append(c)
    accepted = []
    if selftrain_dir is not None:  # only people still enrolled; crops past the retention are deleted first
        enrolled = set(references.identities.tolist())
        kept = read_accepted(selftrain_dir, card, selftrain_retention_days)
        accepted = [a for a in kept if a.person_id in enrolled]
    selftrain = Crops(
        np.stack([a.crop for a in accepted])
        if accepted
        else np.zeros((0, *references.crops.shape[1:]), np.uint8),
        np.array([a.person_id for a in accepted], dtype=str),
        [str(a.path) for a in accepted],
    )
    extra_crops = Crops.concat(extras, card.alignment.size)
    embedder = Embedder(entry.folder)
    org, ref_crops = org_embeddings(embedder, references, extra_crops, selftrain, adapter.seed)
    people = org.counts()["identities"]
    if people < min_people:
        return (
            "unusable",
            None,
            [f"{people} people with a usable photo: retraining needs at least {min_people}"],
            None,
        )
    pairs = None
    if lfw and data_dir is not None:
        pairs = lfw_view1_pairs(entry.folder, data_dir, models_dir, models_dir.parent / ".retrain-eval-cache")
    data = (
        "the organisation's gallery reference crops (augmented views)"
        + (", extra labelled photos" if len(extra_crops) else "")
        + (", accepted high-score probes" if len(selftrain) else "")
    )
    try:
        outcome = train_and_gate(org, pairs, adapter)
    except ValueError as exc:
        return "unusable", None, [str(exc)], None
    version = version or new_version(entry.version, "ad")
    report = {
        "method": f"adapter ({adapter.loss})",
        "parent": entry.version,
        "candidate_version": version,
        "created_at": utc_stamp(),
        "options": {k: getattr(adapter, k) for k in adapter.__dataclass_fields__},
        "data": {
            "all": org.counts(),
            "extra_folders": counts,
            "selftrain_crops": len(selftrain),
            "lfw_view1": pairs is not None,
        },  # fmt: skip
        **outcome.summary(),
        "epochs": outcome.epochs,
    }
    if not outcome.decision.publish:
        path = refused_report(models_dir, {**report, "status": "refused"})
        log.warning("adapter refused, %s stays: %s", entry.version, "; ".join(outcome.decision.reasons))
        return "refused", None, outcome.decision.reasons, path
    try:
        folder = publish_adapter(
            models_dir, entry, outcome, version, data, ref_crops[:32], {**report, "status": "published"}
        )
    except FaceGateError as exc:  # too few held-out pairs to calibrate (service.org_calibration's refusal)
        path = refused_report(
            models_dir, {**report, "status": "refused", "reasons": [f"cannot calibrate: {exc}"]}
        )
        return "refused", None, [f"cannot calibrate the candidate: {exc}"], path
    log.info("published %s (adapter on %s) in %s", version, entry.version, folder)
    return "published", version, [], folder / "report.json"
