"""LFW accuracy table: FaceGate models through FaceGate's pipeline vs face_recognition, same pairs.

    python bench/accuracy.py    # the README tables: models/dlib, sface, fused, the scratch baseline, face_recognition
    python bench/accuracy.py --model models/dlib --model var/models/dlib-finetuned --plots docs/figures

Protocol (both sides): LFW View 2 ``pairs.txt``, 10 folds, accuracy = mean ± sample std with the
threshold chosen on the other 9 folds; ROC AUC, EER and TAR@FAR=1e-3 over all 6,000 pairs.

* FaceGate: decode -> MTCNN -> one face -> similarity alignment to the card's template -> ONNX;
  score = cosine. No face found: aligned from fixed centred landmarks (see
  ``training.evaluation.embedding_cache``).
* face_recognition 1.3 (dlib's own pipeline): ``load_image_file`` -> ``face_locations`` (HOG,
  1 upsample) -> ``face_encodings`` (5-point landmarks, 1 jitter); score = minus the euclidean
  distance. No face found: the whole image is the location.

Both sides are run twice, differing only where several faces are found: with the largest face (the service's
policy) and with the face nearest the image centre (LFW's labelled subject: deep-funneled images
are centred on it; the largest face is sometimes a bystander).

Embeddings are cached under ``--cache`` (default ``../cache`` beside the repository).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.calibration import ImpostorTail  # noqa: E402
from service.model_card import Calibration, load_card  # noqa: E402
from training.evaluation.embedding_cache import EmbeddedImages, PipelineConfig, embed_images  # noqa: E402
from training.evaluation.evaluate import evaluate_lfw, pair_scores, score_report  # noqa: E402
from training.evaluation.identification import identification_report, open_set_protocol  # noqa: E402
from training.evaluation.pairs import PairSet, list_identities, read_lfw_pairs  # noqa: E402
from training.paths import paths  # noqa: E402

log = logging.getLogger("bench.accuracy")
# the shipped versions (dlib's weights, SFace, the fused model) and the from-scratch baseline
# (training/configs/scratch.toml): every row of the README's accuracy tables
DEFAULT_MODELS = tuple(
    REPO / "models" / n for n in ("dlib", "sface", "fused", "baselines/scratch-mobilefacenet")
)


def default_data() -> Path:
    return paths().data


def default_cache() -> Path:
    return paths().cache


def _load_fr(path: Path) -> dict[str, tuple[np.ndarray, bool]]:
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {str(k): (e, bool(f)) for k, e, f in zip(z["keys"], z["enc"], z["found"], strict=True)}


def _save_fr(path: Path, cached: dict[str, tuple[np.ndarray, bool]]) -> None:
    ks = list(cached)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp, keys=np.array(ks), enc=np.stack([cached[k][0] for k in ks]), found=[cached[k][1] for k in ks]
    )
    os.replace(tmp, path)


def _pick(
    locs: list[tuple[int, int, int, int]], shape: tuple[int, ...], choice: str
) -> tuple[int, int, int, int]:
    """face_recognition boxes are (top, right, bottom, left)."""
    if choice == "largest":
        return max(locs, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(locs, key=lambda b: np.hypot((b[0] + b[2]) / 2 - cy, (b[1] + b[3]) / 2 - cx))


def face_recognition_encodings(
    image_root: Path, keys: list[str], cache_dir: Path, choice: str = "largest"
) -> tuple[np.ndarray, np.ndarray]:
    """``(encodings [n, 128], found [n])`` from face_recognition's own pipeline, cached per image.

    ``choice`` is the face used when several are found: "largest" or "centre" (nearest the image
    centre); the "centre" pass reuses the "largest" encoding wherever both pick the same box.
    """
    import face_recognition as fr

    base = cache_dir / "face_recognition-hog1-small-j1.npz"
    path = base if choice == "largest" else cache_dir / f"face_recognition-hog1-small-j1-{choice}.npz"
    cached = _load_fr(path)
    largest = _load_fr(base) if choice != "largest" else {}
    todo = [k for k in dict.fromkeys(keys) if k not in cached]
    for n, key in enumerate(todo, 1):
        img = fr.load_image_file(str(image_root / key))
        locs = fr.face_locations(img, number_of_times_to_upsample=1, model="hog")
        if not locs:
            loc = (0, img.shape[1], img.shape[0], 0)
        else:
            loc = _pick(locs, img.shape, choice)
        if key in largest and (not locs or loc == _pick(locs, img.shape, "largest")):
            cached[key] = largest[key]
        else:
            cached[key] = (fr.face_encodings(img, [loc], num_jitters=1, model="small")[0], bool(locs))
        if n % 250 == 0 or n == len(todo):
            log.info("face_recognition (%s face): %d/%d", choice, n, len(todo))
            _save_fr(path, cached)
    return np.stack([cached[k][0] for k in keys]), np.array([cached[k][1] for k in keys])


def face_recognition_lfw(
    data_dir: Path, cache_dir: Path, pairs: PairSet, choice: str
) -> tuple[dict, np.ndarray]:
    keys = pairs.keys
    enc, found = face_recognition_encodings(data_dir / "lfw" / "images", keys, cache_dir, choice)
    idx = {k: i for i, k in enumerate(keys)}
    a = enc[[idx[p.a] for p in pairs.pairs]]
    b = enc[[idx[p.b] for p in pairs.pairs]]
    scores = -np.linalg.norm(a - b, axis=1)
    report = score_report(scores, pairs)
    report.update(
        {
            "model": "face_recognition 1.3 (dlib ResNet v1, HOG + 5-point chips)",
            "score": "minus euclidean distance",
            "images": len(keys),
            "faces_not_found": int((~found).sum()),
            "no_face_policy": "the whole image is used as the face location",
        }
    )
    return report, scores


def strict_and_open_set(
    emb: EmbeddedImages, pairs: PairSet, calibration: Calibration, keys: list[str], labels: list[str]
) -> dict:
    """TAR at FAR 1e-4 over every cross-identity pair of ``keys``, and the open-set 1:N figures."""
    vectors = {k: emb.embeddings[i] for k, i in emb.index().items()}
    tail = ImpostorTail()
    tail.add_within(np.stack([vectors[k] for k in keys]), labels)
    scores, _ = pair_scores(pairs, emb)
    genuine = scores[pairs.labels]
    t = tail.threshold_at(1e-4)
    out: dict = {"tar_at_far_1e-4_all_cross_pairs": {"tar": float(np.mean(genuine >= t)), "similarity": t,
                                                     "impostor_pairs": tail.total}}  # fmt: skip
    out["open_set"] = identification_report(open_set_protocol(keys, labels), vectors, calibration)
    return out


def celeba_open_set(model_dir: Path, args: argparse.Namespace, config: PipelineConfig) -> dict:
    root = args.data / "celeba-aligned"
    excluded = set(args.celeba_exclude.read_text().split()) if args.celeba_exclude else set()
    ids = {n: ks for n, ks in list_identities(root).items() if n not in excluded}
    keys = [k for ks in ids.values() for k in ks]
    labels = [n for n, ks in ids.items() for _ in ks]
    emb = embed_images(root, keys, model_dir, args.models_dir, args.cache, config)
    vectors = {k: emb.embeddings[i] for k, i in emb.index().items()}
    return identification_report(open_set_protocol(keys, labels), vectors, load_card(model_dir).calibration)


def markdown_table(rows: list[tuple[str, str, dict]]) -> str:
    out = [
        "| model (pipeline) | face used | LFW accuracy (10-fold) | ROC AUC | EER | TAR@FAR=1e-3 | TAR@FAR=1e-4 "
        "(all cross pairs) | rank-1 | open-set IR @ FPIR 1 % (measured FPIR) | CelebA rank-1 | CelebA IR (FPIR) "
        "| no face found |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(v: object) -> str:
        return f"{100 * float(v):.1f} %" if isinstance(v, int | float) else "–"

    for name, choice, r in rows:
        acc = f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} %"
        tar = f"{100 * r['tar_at_far']['0.001']['tar']:.2f} %"
        t4 = r.get("tar_at_far_1e-4_all_cross_pairs", {}).get("tar")
        o = r.get("open_set", {})
        c = r.get("celeba_open_set", {})
        ir = f"{pct(o['identification_rate'])} ({pct(o['fpir'])})" if o else "–"
        cir = f"{pct(c['identification_rate'])} ({pct(c['fpir'])})" if c else "–"
        out.append(
            f"| {name} | {choice} | {acc} | {r['roc_auc']:.4f} | {100 * r['eer']:.2f} % | {tar} | {pct(t4)} "
            f"| {pct(o.get('rank1'))} | {ir} | {pct(c.get('rank1'))} | {cir} | {r['faces_not_found']} of {r['images']} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", type=Path, help="model dir (card + ONNX); repeatable")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--models-dir", type=Path, default=REPO / "models", help="holds mtcnn/")
    ap.add_argument(
        "--face", nargs="+", choices=["largest", "centre"], default=["largest", "centre"],
        help="face used when several are found: the largest (the service's policy) and/or the one nearest "
        "the image centre (LFW's subject)",
    )  # fmt: skip
    ap.add_argument("--no-face-recognition", action="store_true")
    ap.add_argument("--no-celeba", action="store_true", help="skip the CelebA open-set columns")
    ap.add_argument(
        "--celeba-exclude",
        type=Path,
        help="text file of CelebA identities (one per line) left out of the CelebA open set: "
        "the people a model was adapted on",
    )
    ap.add_argument(
        "--plots", type=Path, help="write lfw_roc_det.png (all rows) and per-model histograms here"
    )
    ap.add_argument("--json", type=Path, help="write the full reports here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pairs = read_lfw_pairs(args.data / "lfw" / "pairs.txt")
    rows: list[tuple[str, str, dict]] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    images = args.data / "lfw" / "images"
    for choice in args.face:
        config = PipelineConfig(face_choice=choice)
        for model_dir in args.model or DEFAULT_MODELS:
            if not (model_dir / "model.json").is_file():
                raise SystemExit(f"{model_dir}: no model.json (a model folder holds model.onnx + model.json)")
            plots = args.plots / f"{model_dir.name}-{choice}" if args.plots else None
            rep = evaluate_lfw(model_dir, args.data, args.models_dir, args.cache, config, plots)
            emb = embed_images(images, pairs.keys, model_dir, args.models_dir, args.cache, config)
            keys = sorted(set(pairs.keys))
            rep.update(strict_and_open_set(emb, pairs, load_card(model_dir).calibration, keys,
                                           [k.split("/")[0] for k in keys]))  # fmt: skip
            if not args.no_celeba and choice == "largest":
                rep["celeba_open_set"] = celeba_open_set(model_dir, args, config)
            rows.append((f"{rep['model']} (FaceGate: MTCNN + align + ONNX)", choice, rep))
            curves[f"{rep['model']}, {choice} face"] = (pair_scores(pairs, emb)[0], pairs.labels)
        if not args.no_face_recognition:
            rep, scores = face_recognition_lfw(args.data, args.cache, pairs, choice)
            rows.append(("face_recognition 1.3 (HOG + dlib 5-point chips)", choice, rep))
            curves[f"face_recognition, {choice} face"] = (scores, pairs.labels)
    if args.plots:
        from training.evaluation.plots import save_roc_det

        save_roc_det(curves, args.plots / "lfw_roc_det.png")
    if args.json:
        args.json.write_text(json.dumps([{"name": n, "face": c, **r} for n, c, r in rows], indent=2))
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
