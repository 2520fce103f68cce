"""What a gallery migrated from old stored crops loses against one built from stored canvases.

    python bench/crop_migration.py                      # old chips of models/dlib, target models/sface
                                                        # (else models/baselines/scratch-mobilefacenet)
    python bench/crop_migration.py --target models/sface --source models/dlib

Before storage revision 0002 the gallery stored the enrolling model's own aligned crop (for the
default dlib model a 150x150 chip); a model on another template re-embeds it realigned, black
where the chip does not reach. Since then it stores the model-independent canvas of
``service.pipeline.canvas``. For every LFW View 2 image (MTCNN through the service's own
detector, largest face; no face found: fixed centred landmarks, as ``bench/accuracy.py``), the
target model's reference embedding is made three ways, through the service's own re-embedding
code (``CropEmbedder`` on the stored PNG):

* ``direct``: the target model aligning the photo itself (a gallery freshly enrolled with it);
* ``canvas``: cut from the stored canvas;
* ``old chip``: realigned from the source model's stored chip.

Probes are always ``direct`` (a /verify or /identify photo). Figures: LFW View 2 k-fold accuracy
(first image of each pair as the reference) and TAR at FAR 1e-3; closed-set rank-1 with one
enrolled photo (the first, by name) per identity of the View 2 images with two or more, the
others probing; the cosine of each reference embedding to the ``direct`` one; and the share of
black (uncovered) pixels in the target's crop.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.crop_embed import CropEmbedder, StoredCrop, alignment_meta, canvas_alignment_meta  # noqa: E402
from service.model_card import load_card  # noqa: E402
from service.pipeline.align import align_face  # noqa: E402
from service.pipeline.canvas import cut_canvas  # noqa: E402
from service.pipeline.embed import Embedder  # noqa: E402
from training.evaluation.embedding_cache import (  # noqa: E402
    PipelineConfig,
    centred_landmarks,
    detect_images,
    read_rgb,
)
from training.evaluation.identification import OpenSet, identification_report, open_set_protocol  # noqa: E402
from training.evaluation.metrics import verification_report  # noqa: E402
from training.evaluation.pairs import PairSet, read_lfw_pairs  # noqa: E402
from training.paths import paths  # noqa: E402

log = logging.getLogger("bench.crop_migration")
WAYS = ("direct", "canvas", "old chip")


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def default_target() -> Path:
    sface = REPO / "models" / "sface"
    return (
        sface if (sface / "model.json").is_file() else REPO / "models" / "baselines" / "scratch-mobilefacenet"
    )


def reference_sets(
    image_root: Path, keys: list[str], source: Path, target: Path, threads: int
) -> tuple[dict[str, np.ndarray], dict[str, float], int]:
    """Embeddings of every image the three ways, mean black share per way, faces not found."""
    config = PipelineConfig(threads=threads)
    det = detect_images(image_root, keys, REPO / "models", paths().cache, config)
    src = load_card(source).alignment
    embedder = Embedder(target, None, threads)
    reembed = CropEmbedder(embedder)
    tgt = embedder.card.alignment
    crops: dict[str, list[np.ndarray]] = {w: [] for w in WAYS}
    out: dict[str, list[np.ndarray]] = {w: [] for w in WAYS}
    black: dict[str, list[float]] = {w: [] for w in WAYS}
    for n, key in enumerate(keys):
        rgb = read_rgb(image_root / key, config.max_pixels)
        points = det.landmarks[n] if det.found[n] else centred_landmarks(rgb.shape[1], rgb.shape[0])
        points = np.asarray(points, np.float64)
        face = {"landmarks": points.tolist()}
        canvas = cut_canvas(rgb, points)
        chip = align_face(rgb, points, np.asarray(src.template), src.size)
        made = {
            "direct": align_face(rgb, points, np.asarray(tgt.template), tgt.size),
            "canvas": reembed.prepare(
                StoredCrop(
                    _png(canvas.image),
                    {"face": face, "alignment": canvas_alignment_meta(), "canvas": canvas.meta()},
                    "canvas",
                )
            ),
            "old chip": reembed.prepare(
                StoredCrop(_png(chip), {"face": face, "alignment": alignment_meta(src)}, "chip")
            ),
        }
        for way, crop in made.items():
            crops[way].append(crop)
            black[way].append(float((crop.reshape(-1, 3).sum(1) == 0).mean()))
        if len(crops["direct"]) == 64 or n == len(keys) - 1:
            for way in WAYS:
                out[way].append(embedder.embed(np.stack(crops[way])))
                crops[way] = []
        if (n + 1) % 1000 == 0:
            log.info("%d/%d images", n + 1, len(keys))
    return (
        {w: np.concatenate(out[w]) for w in WAYS},
        {w: float(np.mean(black[w])) for w in WAYS},
        int((~det.found).sum()),
    )


def rank1(keys: list[str], gallery: np.ndarray, probes: np.ndarray) -> tuple[float, int, int]:
    """Closed-set rank-1: first photo of each identity with 2+ photos enrolled, the rest probe."""
    by_id: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_id.setdefault(k.split("/")[0], []).append(i)
    ids = sorted(p for p, idx in by_id.items() if len(idx) >= 2)
    enrolled = np.stack([gallery[sorted(by_id[p], key=lambda i: keys[i])[0]] for p in ids])
    probe_idx = [i for p in ids for i in sorted(by_id[p], key=lambda i: keys[i])[1:]]
    truth = np.array([ids.index(keys[i].split("/")[0]) for i in probe_idx])
    best = np.argmax(probes[probe_idx] @ enrolled.T, axis=1)
    return float((best == truth).mean()), len(ids), len(probe_idx)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--source", type=Path, default=REPO / "models" / "dlib", help="model whose chips were stored"
    )
    ap.add_argument("--target", type=Path, default=None, help="model the gallery migrates to")
    ap.add_argument("--data", type=Path, default=None, help="folder holding lfw/ (default: FACEGATE_DATA)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", type=int, default=10, help="use the first N View 2 folds (a quick look: 2)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = args.target or default_target()
    lfw = (args.data or paths().data) / "lfw"
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    if args.folds < pairs.n_folds:
        pairs = PairSet(tuple(p for p in pairs.pairs if p.fold < args.folds), args.folds, pairs.source)
    keys = sorted(set(pairs.keys))
    start = time.perf_counter()
    emb, black, not_found = reference_sets(lfw / "images", keys, args.source, target, args.threads)
    idx = {k: i for i, k in enumerate(keys)}
    a = np.array([idx[p.a] for p in pairs.pairs])
    b = np.array([idx[p.b] for p in pairs.pairs])
    src_card, tgt_card = load_card(args.source), load_card(target)
    print(
        f"old chips: {src_card.name} {src_card.version} ({src_card.alignment.size[0]}x{src_card.alignment.size[1]})"
    )
    print(
        f"target:    {tgt_card.name} {tgt_card.version} ({tgt_card.alignment.size[0]}x{tgt_card.alignment.size[1]}, "
        f"template {[tuple(round(v, 2) for v in p) for p in tgt_card.alignment.template]})"
    )
    print(
        f"images: {len(keys)} (LFW View 2, {pairs.n_folds} folds), no face found: {not_found} (centred landmarks)"
    )
    print(
        f"{'reference':<10} {f'LFW {pairs.n_folds}-fold':>16} {'TAR@FAR1e-3':>12} {'rank-1':>8} "
        f"{'IR@FPIR1%':>10} {'FPIR':>6} {'cos to direct':>14} {'black px':>9}"
    )
    for way in WAYS:
        scores = np.sum(emb[way][a].astype(np.float64) * emb["direct"][b], axis=1)
        rep = verification_report(scores, pairs.labels, pairs.folds)
        r1, n_ids, n_probes = rank1(keys, emb[way], emb["direct"])
        cos = np.sum(emb[way].astype(np.float64) * emb["direct"], axis=1)
        # open set at the threshold /identify takes from the target's card: references made this way,
        # probes and strangers always direct
        vectors = {f"ref:{k}": emb[way][i] for k, i in idx.items()} | {
            k: emb["direct"][i] for k, i in idx.items()
        }
        proto = open_set_protocol(keys, [k.split("/")[0] for k in keys])
        proto = OpenSet([f"ref:{k}" for k in proto.gallery], proto.probes, proto.strangers,
                        {**proto.identity, **{f"ref:{k}": proto.identity[k] for k in proto.gallery}})  # fmt: skip
        ident = identification_report(proto, vectors, tgt_card.calibration)
        print(
            f"{way:<10} {100 * rep.accuracy_mean:>8.2f} ± {100 * rep.accuracy_std:4.2f} %"
            f" {100 * rep.tar_at_far['0.001']['tar']:>10.2f} %"
            f" {100 * r1:>6.2f} % {100 * float(ident['identification_rate']):>8.2f} % {100 * float(ident['fpir']):>4.1f} %"
            f" {cos.mean():>8.4f} (min {cos.min():.3f})"
            f" {100 * black[way]:>7.2f} %"
        )
    print(
        f"rank-1: {n_ids} identities enrolled (one photo each), {n_probes} probes; {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
