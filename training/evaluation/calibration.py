"""Calibration: ``score = sigmoid(a * cos + b)`` and the impostor tail ``far_table``.

* ``a, b``: logistic regression of same/different on cosine similarity (Newton / IRLS) over
  held-out labelled pairs.
* ``far_table``: for each false-accept rate ``f`` the similarity ``t`` such that at most a share
  ``f`` of impostor pairs score above ``t``, estimated from every cross-identity pair of one or
  more labelled image sets (millions of pairs), so that /identify can look up ``f = FPIR / N``.
  A rate is tabulated only when at least ``min_tail`` impostor pairs lie above its threshold.
* ``far_tail``: past that table, a generalised Pareto tail fitted to the same pairs
  (``training.evaluation.tail_fit``), down to 1e-8.

Similarities are accumulated in a histogram of width ``1e-5`` on [-1, 1]; a threshold is the
upper edge of its bin, so it errs on the strict side by less than 1e-5.

The numpy maths (``fit_logistic``, ``ImpostorTail``, ``make_calibration``, ``FAR_GRID``) lives in
``service.calibration`` so that the service can calibrate on an organisation's pairs without
torch; it is re-exported here unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from service.calibration import FAR_GRID, ImpostorTail, fit_logistic, make_calibration
from service.model_card import Calibration
from training.evaluation.embedding_cache import PipelineConfig, embed_images
from training.evaluation.pairs import list_identities, read_lfw_pairs
from training.evaluation.tail_fit import FITTED_GRID, fit_tail
from training.paths import require

log = logging.getLogger(__name__)

__all__ = [
    "FAR_GRID",
    "IMPOSTOR_SOURCES",
    "ImpostorTail",
    "calibrate_model",
    "fit_logistic",
    "make_calibration",
]


def _source_images(
    name: str, data_dir: Path, exclude: Collection[str] = ()
) -> tuple[Path, list[str], list[str]]:
    """``(image_root, keys, identity labels)`` of a named impostor source, without the identities
    in ``exclude`` (e.g. the people an adapter was trained on)."""
    if name == "lfw-outside-view2":
        root = require(data_dir / "lfw" / "images", "FACEGATE_DATA", "LFW images")
        view2 = {k.split("/")[0] for k in read_lfw_pairs(data_dir / "lfw" / "pairs.txt").keys}
        ids = {n: ks for n, ks in list_identities(root).items() if n not in view2}
    elif name == "celeba":
        root = require(data_dir / "celeba-aligned", "FACEGATE_DATA", "CelebA (celeba-aligned)")
        ids = list_identities(root)
    else:
        raise ValueError(f"unknown impostor source {name!r}; valid: {', '.join(IMPOSTOR_SOURCES)}")
    ids = {n: ks for n, ks in ids.items() if n not in exclude}
    keys = [k for ks in ids.values() for k in ks]
    labels = [n for n, ks in ids.items() for _ in ks]
    return root, keys, labels


IMPOSTOR_SOURCES = {
    "lfw-outside-view2": "LFW people who appear in no View 2 pair (disjoint from the LFW test folds)",
    "celeba": "celeba-aligned (89x109 CelebA crops; CelebA's identities do not overlap LFW's)",
}


def calibrate_model(
    model_dir: Path,
    data_dir: Path,
    models_dir: Path,
    cache_dir: Path,
    sources: Sequence[str] = ("lfw-outside-view2", "celeba"),
    config: PipelineConfig = PipelineConfig(fallback="none", face_choice="centre"),
    fit_tail_beyond: bool = True,
    exclude_identities: Collection[str] = (),
) -> Calibration:
    """Calibrate a model through the service pipeline; images without a face are left out.

    The face nearest the image centre is used: the labels name the person the image is centred on.

    ``a, b`` from LFW View 1 (``pairsDevTrain.txt`` + ``pairsDevTest.txt``); the impostor tail from
    every cross-identity pair within and across ``sources`` (datasets are of different people),
    and, with ``fit_tail_beyond``, a generalised Pareto tail fitted to it for the rates past the
    measured table down to 1e-8 (``training.evaluation.tail_fit``).
    """
    lfw = data_dir / "lfw"
    view1 = [read_lfw_pairs(lfw / f) for f in ("pairsDevTrain.txt", "pairsDevTest.txt")]
    pairs = [p for ps in view1 for p in ps.pairs]
    emb = embed_images(
        lfw / "images", [k for ps in view1 for k in ps.keys], model_dir, models_dir, cache_dir, config
    )
    idx = emb.index()
    sims = np.array([float(emb.embeddings[idx[p.a]] @ emb.embeddings[idx[p.b]]) for p in pairs])
    same = np.array([p.same for p in pairs])
    ok = np.isfinite(sims)
    total = ImpostorTail()
    described, sets = [], []
    for name in sources:
        root, keys, labels = _source_images(name, data_dir, exclude_identities)
        e = embed_images(root, keys, model_dir, models_dir, cache_dir, config)
        keep = e.found
        tail = ImpostorTail()
        n = tail.add_within(e.embeddings[keep], np.asarray(labels)[keep])
        total.merge(tail)
        sets.append(e.embeddings[keep])
        described.append(
            {
                "source": name,
                "about": IMPOSTOR_SOURCES[name],
                "images": int(keep.sum()),
                "no_face": int((~keep).sum()),
                "identities": len(set(np.asarray(labels)[keep].tolist())),
                "impostor_pairs": n,
                "similarity_at_far": {f"{f:g}": round(tail.threshold_at(f), 4) for f in (1e-3, 1e-4, 1e-5)},
            }
        )
    cross = 0
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            cross += total.add_across(sets[i], sets[j])
    data = (
        f"a, b: logistic regression on LFW View 1 (pairsDevTrain + pairsDevTest: {int(same[ok].sum())} "
        f"matched, {int((~same[ok]).sum())} mismatched pairs; classes balanced, so the score is P(same) "
        "at a 50% prior). "
        f"far_table: all {total.total:,} cross-identity pairs within and across: "
        + "; ".join(f"{d['source']} ({d['images']} images, {d['identities']} people)" for d in described)
        + f" ({cross:,} of them across sets). Images without a detected face left out; "
        "where several faces are found, the one nearest the image centre (the labelled person). "
        "LFW View 1 people overlap View 2 people; the impostor sources do not."
        + (
            f" {len(exclude_identities)} identities left out of the impostor sources (the people "
            "the model was adapted on)."
            if exclude_identities
            else ""
        )
    )
    cal = make_calibration(
        sims[ok & same],
        sims[ok & ~same],
        total,
        data,
        logistic_pairs={"source": "LFW View 1", "no_face_pairs": int((~ok).sum())},
        impostor_sources=described,
        cross_source_pairs=cross,
    )
    if not fit_tail_beyond:
        return cal
    fitted = fit_tail(total, cal.far_table, [f for f in FITTED_GRID if f < cal.strictest_measured_far])
    return cal.model_copy(update={"far_tail": fitted, "data": f"{cal.data}; far_tail: {fitted.about}"})
