"""The retraining job shown on data: CelebA identities, then LFW people, as "the organisation's people".

Each run builds the organisation as the job sees it (``training.retrain.adapter.OrgEmbeddings``):
each identity's first photo (sorted by path) is its enrolled reference crop, two augmented views
of it (``training.retrain.gate.augmented_views``) are embedded by the model, and its other photos
are the organisation's extra labelled photos; those the model in use already matches to the
reference above the card's similarity at FAR 1e-4 stand for the probes a service would keep for
self-training (``FACEGATE_SELFTRAIN_DIR``). Then the job's own ``train_and_gate`` (identity-disjoint
split, adapter, paired bootstrap gate with LFW View 1) and, when it publishes, the job's own
``publish_adapter`` into ``var/retrain/models`` (composed ONNX, parity with torch, recalibration
by the service's organisation calibration, ``service.org_calibration``, on the held-out photos).

Runs: ``celeba`` and ``lfw`` (LFW people outside View 1's test pairs, so the LFW View 1 gate never
sees the organisation's people; View 2 is not used), ``lfw-dlib`` (the same LFW organisation for a
deployment still on ``models/dlib``: every run names its deployment model, ``--model`` for the
others), ``celeba-shuffled`` (the training photos' identities
shuffled) and ``celeba-destroyed`` (the trained adapter's last layer overwritten): made to
regress, both must be refused and the sources measured on CelebA
(``celeba-views`` ...). Embeddings come from caches (``training.science.embeddings``,
``training.evaluation.embedding_cache``); the first run computes them (minutes), later runs reuse.

    OMP_NUM_THREADS=1 python bench/retrain.py                # all runs -> docs/retrain/results.json
    OMP_NUM_THREADS=1 python bench/retrain.py --runs celeba  # one run
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.model_card import load_card  # noqa: E402
from service.model_registry import read_entry  # noqa: E402
from service.pipeline.embed import Embedder  # noqa: E402
from training.data.augment import Augment  # noqa: E402
from training.evaluation.embedding_cache import (  # noqa: E402
    PipelineConfig,
    detect_images,
    embed_images,
    load_npz,
    read_rgb,
    save_npz,
)
from training.evaluation.pairs import read_lfw_pairs  # noqa: E402
from training.retrain.adapter import REFERENCE, AdapterOptions, OrgEmbeddings, train_and_gate  # noqa: E402
from training.retrain.adapter_job import lfw_view1_pairs, publish_adapter  # noqa: E402
from training.retrain.gate import augmented_views  # noqa: E402
from training.science.embeddings import CELEBA_MIN_FACE, aligned_crop, celeba_keys, embed_set  # noqa: E402

log = logging.getLogger("bench.retrain")

LFW_PER_PERSON = 20  # photos of one LFW person at most (a few people have hundreds)
SOURCE_RUNS = {  # the sources measured on CelebA (the default: the real photos, extra + selftrain)
    "celeba-views": ("view",),
    "celeba-selftrain": ("selftrain",),
    "celeba-extra": ("extra",),
    "celeba-views+extra+selftrain": ("view", "extra", "selftrain"),
}
RUN_MODELS = {"lfw-dlib": Path("models/dlib")}  # runs for another deployment model than --model


def _crops(
    root: Path, keys: list[str], cache: Path, config: PipelineConfig, fallback: str, card
) -> np.ndarray:
    det = detect_images(root, keys, Path("models"), cache, config)
    template = np.asarray(card.alignment.template, np.float64)
    out = []
    for i, k in enumerate(keys):
        rgb = read_rgb(root / k, config.max_pixels)
        landmarks = det.landmarks[i] if det.found[i] else None
        out.append(aligned_crop(rgb, landmarks, fallback, template, card.alignment.size))
    return np.stack(out)


def _organisation(name: str, keys: list[str], ids: list[str], emb: np.ndarray, crops_of, model: Path,
                  cache: Path, strict: float, seed: int, views: bool = True) -> tuple[OrgEmbeddings, np.ndarray]:  # fmt: skip
    """References (first photo per identity), 2 augmented views each (cached; ``views=False``:
    none, only the parity crops), other photos as extra or (matched above ``strict`` by the model)
    self-training rows."""
    order = np.lexsort((np.array(keys), np.array(ids)))
    keys_s, ids_s, emb_s = [keys[i] for i in order], np.array(ids)[order], emb[order]
    first = np.r_[True, ids_s[1:] != ids_s[:-1]]
    ref_keys = [k for k, f in zip(keys_s, first) if f]
    path = cache / f"{name}-views-{model.name}-s{seed}.npz"
    z = load_npz(path)
    if not views:
        z = {"keys": np.array(ref_keys), "views": np.zeros((0, emb.shape[1]), np.float32),
             "crops": crops_of(ref_keys[:64])}  # fmt: skip
    elif not z or list(z["keys"]) != ref_keys:
        crops = crops_of(ref_keys)
        views = augmented_views(crops, Augment(), seed)
        embedder = Embedder(model, threads=1)
        ve = np.concatenate([embedder.embed(views[i : i + 64]) for i in range(0, len(views), 64)])
        save_npz(path, keys=np.array(ref_keys), views=ve, crops=crops[:64])
        z = load_npz(path)
    ref_of = {i: e for i, e, f in zip(ids_s, emb_s, first) if f}
    own = np.sum(emb_s * np.stack([ref_of[i] for i in ids_s]), axis=1)
    source = np.where(first, REFERENCE, np.where(own >= strict, "selftrain", "extra"))
    ref_ids = ids_s[first]
    org = OrgEmbeddings.concat(
        [OrgEmbeddings(emb_s, ids_s, source), OrgEmbeddings(z["views"], np.concatenate([ref_ids] * 2)[: len(z["views"])],
                                                            np.full(len(z["views"]), "view"))]
    )  # fmt: skip
    return org, z["crops"]


def celeba(data: Path, model: Path, strict: float, seed: int):
    root = data / "celeba-aligned"
    keys, names = celeba_keys(root)
    cfg = PipelineConfig(min_face_size=CELEBA_MIN_FACE, threads=1)
    det_cache = Path("var/science/detections")
    s = embed_set(root, keys, names, model, Path("models"), det_cache, cfg, "celeba",
                  Path(f"var/science/{model.name}-celeba.npz"))  # fmt: skip
    card = load_card(model)
    return _organisation("celeba", s.keys.tolist(), s.names.tolist(), s.embeddings,
                         lambda ks: _crops(root, ks, det_cache, cfg, "celeba", card), model,
                         Path("var/retrain"), strict, seed)  # fmt: skip


def view1_people(root: Path) -> set[str]:
    """The people in LFW View 1's test pairs (``pairsDevTest.txt``): the general-accuracy gate's."""
    return {k.split("/")[0] for k in read_lfw_pairs(root / "pairsDevTest.txt").keys}


def lfw_org_keys(root: Path) -> list[str]:
    """LFW people outside View 1's test pairs (the gate's), at most LFW_PER_PERSON photos each."""
    v1 = view1_people(root)
    keys = []
    for d in sorted((root / "images").iterdir()):
        if d.name not in v1:
            keys += [f"{d.name}/{f}" for f in sorted(p.name for p in d.iterdir())[:LFW_PER_PERSON]]
    return keys


def disjoint_from_view1(root: Path, out) -> dict[str, int]:
    """Checks that LFW View 1's test people meet neither the people the adapter trained on nor the
    held-out organisation people (raises otherwise); the counts for the record."""
    v1 = view1_people(root)
    train, held = set(out.split.train_ids), set(out.split.held_ids)
    for name, people in (("training", train), ("held-out", held)):
        shared = sorted(v1 & people)
        if shared:
            raise RuntimeError(
                f"{len(shared)} {name} organisation people are in LFW View 1's test pairs: {shared[:5]}"
            )
    if train & held:
        raise RuntimeError("training and held-out organisation people overlap")
    return {
        "view1_test_people": len(v1),
        "training_people": len(train),
        "held_out_people": len(held),
        "shared": 0,
    }


def lfw(data: Path, model: Path, strict: float, seed: int):
    """LFW people as the organisation (no augmented views: no LFW run uses them)."""
    root = data / "lfw"
    keys = lfw_org_keys(root)
    cache = Path("var/retrain/cache")
    cfg = PipelineConfig(threads=1)
    e = embed_images(root / "images", keys, model, Path("models"), cache, cfg)
    card = load_card(model)
    return _organisation("lfw", keys, [k.split("/")[0] for k in keys], e.embeddings,
                         lambda ks: _crops(root / "images", ks, cache, cfg, "centred", card), model,
                         Path("var/retrain"), strict, seed, views=False)  # fmt: skip


def shuffler(seed: int):
    """Made to regress: the training photos' identities shuffled (references kept), so the pairs
    teach the adapter nothing true. Applied after the split: the held-out identities are untouched."""

    def shuffle(train: OrgEmbeddings) -> OrgEmbeddings:
        rng = np.random.default_rng(seed + 1)
        ids = train.ids.copy()
        rows = np.flatnonzero(train.source != REFERENCE)
        ids[rows] = ids[rng.permutation(rows)]
        return OrgEmbeddings(train.emb, ids, train.source)

    return shuffle


def destroy(adapter) -> None:
    """Made to regress: the trained adapter's last layer overwritten with large random weights."""
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        adapter.fc2.weight.copy_(torch.randn(adapter.fc2.weight.shape, generator=gen) * 0.5)


def run_one(name: str, model: Path, org, lfw_pairs, opts: AdapterOptions, relabel=None, corrupt=None):
    t0 = time.perf_counter()
    out = train_and_gate(org, lfw_pairs, opts, relabel=relabel, corrupt=corrupt)
    record = {
        "dataset": name,
        "model": str(model),
        "published": out.decision.publish,
        "dir_before": round(out.org.before, 4),
        "dir_after": round(out.org.after, 4),
        "interval_low": round(out.org.low, 4),
        "interval_high": round(out.org.high, 4),
        "method": f"adapter ({opts.loss}), sources: {'+'.join(out.sources)}",
        "decided_by": out.decision.decided_by,
        "reasons": out.decision.reasons,
        "lfw_view1": out.lfw.as_dict() if out.lfw else None,
        "train": out.summary()["train"],
        "held_out": out.split.held_out.counts(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return record, out


def table(records: list[dict]) -> str:
    lines = [
        "| run | model in use | method | held-out (enrolled / probes / strangers) | DIR @ FPIR 1 % before → after | 95 % interval of the change | LFW View 1 before → after [interval] | published | decided by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        h, lv = r["held_out"], r["lfw_view1"]
        lfw_cell = (f"{lv['before']:.4f} → {lv['after']:.4f} [{lv['interval_low']:+.4f}, {lv['interval_high']:+.4f}]"
                    if lv else "—")  # fmt: skip
        lines.append(
            f"| {r['dataset']} | `{r['model']}` | {r['method']} | {h['enrolled_identities']} / {h['genuine_probes']} / "
            f"{h['stranger_probes']} | {r['dir_before']:.4f} → {r['dir_after']:.4f} | "
            f"[{r['interval_low']:+.4f}, {r['interval_high']:+.4f}] | {lfw_cell} | "
            f"{'yes' if r['published'] else '**no**'} | {r['decided_by']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--model", type=Path, default=Path("models/sface"))
    p.add_argument(
        "--runs",
        default="celeba,lfw,lfw-dlib,celeba-shuffled,celeba-destroyed,celeba-contrastive,"
        + ",".join(SOURCE_RUNS),
    )
    p.add_argument("--loss", default="cosine_contrastive")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/retrain/results.json"))
    p.add_argument("--models-out", type=Path, default=Path("var/retrain/models"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = [r for r in a.runs.split(",") if r]
    opts = AdapterOptions(loss=a.loss, epochs=a.epochs, seed=a.seed)
    orgs: dict[tuple[str, Path], tuple] = {}
    per_model: dict[Path, tuple] = {}  # model -> (strict similarity, LFW View 1 pairs, parent entry)
    records = []
    a.models_out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        model = RUN_MODELS.get(run, a.model)
        if model not in per_model:
            card = load_card(model)
            per_model[model] = (
                next(e.similarity for e in card.calibration.far_table if e.far <= 1e-4),
                lfw_view1_pairs(model, a.data, Path("models"), Path("var/retrain/cache")),
                read_entry(model),
            )
        strict, lfw_pairs, parent = per_model[model]
        base = "lfw" if run.startswith("lfw") else "celeba"
        if (base, model) not in orgs:
            orgs[base, model] = (lfw if base == "lfw" else celeba)(a.data, model, strict, a.seed)
        org, crops = orgs[base, model]
        o, relabel, corrupt = opts, None, None
        if run in SOURCE_RUNS:
            o = replace(opts, sources=SOURCE_RUNS[run])
        elif run.endswith("-shuffled"):
            relabel = shuffler(a.seed)
        elif run.endswith("-destroyed"):
            corrupt = destroy
        elif run.endswith("-contrastive"):
            o = replace(opts, loss="contrastive")
        record, out = run_one(run, model, org, lfw_pairs, o, relabel, corrupt)
        if base == "lfw":
            record["view1_disjoint"] = disjoint_from_view1(a.data / "lfw", out)
        record["strict_similarity_for_selftrain"] = strict
        if out.decision.publish and run in ("celeba", "lfw", "lfw-dlib"):
            version = f"{parent.version}-ad.{run}"
            target = a.models_out / version
            if target.exists():
                import shutil

                shutil.rmtree(target)
            folder = publish_adapter(a.models_out, parent, out, version, f"{run} demonstration", crops,
                                     {"demonstration": record})  # fmt: skip
            # who the adapter learnt from: leave them out of any later evaluation or calibration of it
            # (``facegate-train calibrate --exclude-identities``, ``bench/accuracy.py --celeba-exclude``)
            (folder / "train_identities.txt").write_text("\n".join(sorted(out.split.train_ids)) + "\n")
            rep = json.loads((folder / "report.json").read_text())
            record["published_version"] = version
            record["parity_min_cosine"] = rep["parity_min_cosine"]
            cal = json.loads((folder / "calibration_report.json").read_text())  # service.org_calibration's
            record["calibration"] = {k: cal[k] for k in ("a", "b", "target_far", "far", "frr", "photos_used",
                                                         "people", "genuine_pairs", "impostor_pairs")}  # fmt: skip
            record["calibration"]["threshold_similarity"] = cal["threshold"]["similarity"]
        log.info("%s: %s", run, json.dumps(record))
        records.append(record)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": str(a.model), "models": {r: str(m) for r, m in RUN_MODELS.items()}, "seed": a.seed,
            "loss": a.loss, "epochs": a.epochs, "bootstrap": 2000,
            "command": "OMP_NUM_THREADS=1 python bench/retrain.py"}  # fmt: skip
    a.out.write_text(json.dumps({"meta": meta, "runs": records}, indent=2) + "\n")
    print(table(records))


if __name__ == "__main__":
    main()
