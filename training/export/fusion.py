"""Fusion: one model version that runs several embedding networks on one face.

Decision (issue 11, C5): a fused model is **one composed ONNX graph fed a larger common crop**,
not a card with several inputs. The graph takes FaceGate's usual input, ``image`` uint8
``[N, S, S, 3]``: a canvas aligned on a template of its own (:func:`canvas_template`) that holds
every member's crop. Inside the graph, each member's crop is cut from the canvas by a fixed
affine resampling (bilinear ``GridSample`` on a constant grid, rounded to uint8 as the service's
``align_face`` does), optionally flipped and averaged, then each member's unit embedding is
scaled by ``sqrt(w_k / sum(w))`` and the scaled embeddings are concatenated and L2-normalised.
So the fused cosine similarity is the weighted mean of the members' cosines:
``cos(a, b) = sum_k w_k cos_k(a, b) / sum_k w_k``.

Why one graph: every part of the service that handles models (the sha256 check, the card
contract, the embedder, the background re-embedding at a swap, replicas, calibration, the
benchmarks) works unchanged; the stored reference crop is the model's input, so a gallery
re-embeds from stored crops; and one file and one card describe exactly what runs. The cost is
a second bilinear resampling of each member's crop (photo -> canvas -> member crop), which
:func:`member_crop` reproduces in numpy for the tests and is measured in the fused card.

The canvas template is a similarity image of the first member's template scaled so that the
first member needs no resampling beyond the canvas's own, so that member's crop is exact
(compositions of least-squares similarity fits are exact between similar point sets); other
members get the least-squares similarity between the two templates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from service.model_card import ModelCard, load_card
from service.pipeline.align import similarity_transform

FUSED_OPSET = 17
FUSED_CALIBRATION_DATA = {
    "name": "calibration of the fused model only (no weights changed; weights chosen by bench/fusion_weights.py): "
    "LFW View 1 pairs, LFW images of people outside View 2, celeba-aligned (CelebA)",
    "terms": "LFW and CelebA are published for non-commercial research; only the fitted numbers derive from them",
}


@dataclass(frozen=True)
class Member:
    """One network of a fused model: its folder (model.onnx + model.json), weight and flip averaging."""

    model_dir: Path
    weight: float = 1.0
    flip: bool = True

    @cached_property
    def card(self) -> ModelCard:
        """The member's card, read (and its ONNX file's sha256 checked) once."""
        return load_card(self.model_dir)


def canvas_template(members: Sequence[ModelCard], size: int, margin: float = 0.04) -> np.ndarray:
    """5 points for a ``size`` x ``size`` canvas that contains every member's crop.

    The canvas points are the first member's template, scaled and shifted. Each member's crop is
    mapped into the canvas frame (the inverse of the least-squares similarity between the two
    templates); the scale is the largest that keeps the union of those regions, plus ``margin``
    of the side on every edge, inside the canvas, centred.
    """
    base = np.asarray(members[0].alignment.template, dtype=np.float64)
    corners = []
    for card in members:
        w, h = card.alignment.size
        m = similarity_transform(np.asarray(card.alignment.template), base)  # member crop -> base frame
        box = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
        corners.append(box @ m[:, :2].T + m[:, 2])
    pts = np.concatenate(corners)
    lo, hi = pts.min(0), pts.max(0)
    usable = size * (1.0 - 2.0 * margin)
    scale = usable / float((hi - lo).max())
    centre = (lo + hi) / 2.0
    return (base - centre) * scale + (size - 1) / 2.0


def member_transform(canvas: np.ndarray, card: ModelCard) -> np.ndarray:
    """2x3 map from canvas pixel coordinates to the member's crop coordinates."""
    return similarity_transform(canvas, np.asarray(card.alignment.template, dtype=np.float64))


def sampling_grid(canvas_size: int, canvas: np.ndarray, card: ModelCard) -> np.ndarray:
    """``GridSample`` grid (``align_corners=0``) ``[1, h, w, 2]`` that cuts the member's crop.

    Pixel ``i`` of an image has its centre at coordinate ``i`` (the convention of ``align_face``);
    GridSample's normalised coordinate of that centre is ``(2 i + 1) / W - 1``.
    """
    w, h = card.alignment.size
    full = np.vstack([member_transform(canvas, card), [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src = np.stack([xs, ys], axis=-1) @ inv[:, :2].T + inv[:, 2]
    grid = (2.0 * src + 1.0) / canvas_size - 1.0
    return grid[None].astype(np.float32)


def member_crop(canvas_img: np.ndarray, canvas: np.ndarray, card: ModelCard) -> np.ndarray:
    """Slow reference of the graph's crop: bilinear sampling with zero padding, rounded to uint8."""
    size = canvas_img.shape[0]
    grid = sampling_grid(size, canvas, card)[0].astype(np.float64)
    u = (grid[..., 0] + 1.0) * size / 2.0 - 0.5  # back to pixel-centre coordinates
    v = (grid[..., 1] + 1.0) * size / 2.0 - 0.5
    img = canvas_img.astype(np.float64)
    x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fx, fy = u - x0, v - y0
    out = np.zeros((*u.shape, 3))
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            px = img[np.clip(yi, 0, size - 1), np.clip(xi, 0, size - 1)]
            out += (wx * wy * inside)[..., None] * px
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _member_graph(member: Member, prefix: str) -> onnx.GraphProto:
    model = onnx.load(str(member.model_dir / member.card.file))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset != FUSED_OPSET:
        model = onnx.version_converter.convert_version(model, FUSED_OPSET)
    return compose.add_prefix(model, prefix).graph


def build_fused_graph(members: Sequence[Member], canvas_size: int, canvas: np.ndarray) -> onnx.ModelProto:
    """The composed ONNX model: canvas uint8 NHWC -> every member -> weighted, concatenated, unit norm."""
    cards = [m.card for m in members]
    total = sum(m.weight for m in members)
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = [
        _const("fz_shape_axis0", np.array([0], np.int64)),
        _const("fz_zero", np.array(0.0, np.float32)),
        _const("fz_255", np.array(255.0, np.float32)),
    ]
    if any(m.flip for m in members):  # Slice(start -1, end -inf, axis W, step -1): a horizontal flip
        inits += [
            _const("fz_flip_start", np.array([-1], np.int64)),
            _const("fz_flip_end", np.array([-(2**62)], np.int64)),
            _const("fz_flip_axis", np.array([2], np.int64)),
            _const("fz_flip_step", np.array([-1], np.int64)),
        ]
    nodes += [
        helper.make_node("Cast", ["image"], ["fz_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["fz_float"], ["fz_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", ["image"], ["fz_shape"]),
        helper.make_node("Gather", ["fz_shape", "fz_shape_axis0"], ["fz_n"], axis=0),
    ]
    parts = []
    for k, (member, card) in enumerate(zip(members, cards, strict=True)):
        p = f"m{k}_"
        w, h = card.alignment.size
        inits += [
            _const(p + "grid", sampling_grid(canvas_size, canvas, card)),
            _const(p + "grid_tail", np.array([h, w, 2], np.int64)),
            _const(p + "scale", np.array(math.sqrt(member.weight / total), np.float32)),
        ]
        nodes += [
            helper.make_node("Concat", ["fz_n", p + "grid_tail"], [p + "grid_shape"], axis=0),
            helper.make_node("Expand", [p + "grid", p + "grid_shape"], [p + "grid_n"]),
            helper.make_node(
                "GridSample",
                ["fz_nchw", p + "grid_n"],
                [p + "sampled"],
                mode="bilinear",
                padding_mode="zeros",
                align_corners=0,
            ),  # fmt: skip
            helper.make_node("Round", [p + "sampled"], [p + "rounded"]),
            helper.make_node("Clip", [p + "rounded", "fz_zero", "fz_255"], [p + "clipped"]),
            helper.make_node("Transpose", [p + "clipped"], [p + "nhwc_f"], perm=[0, 2, 3, 1]),
            helper.make_node("Cast", [p + "nhwc_f"], [p + "crop"], to=TensorProto.UINT8),
        ]
        graph = _member_graph(member, p + "net_")
        net_in, net_out = graph.input[0].name, graph.output[0].name
        inits += list(graph.initializer)
        if member.flip:
            nodes += [
                helper.make_node(
                    "Slice",
                    [p + "crop", "fz_flip_start", "fz_flip_end", "fz_flip_axis", "fz_flip_step"],
                    [p + "flipped"],
                ),
                helper.make_node("Concat", [p + "crop", p + "flipped"], [net_in], axis=0),
            ]
        else:
            nodes.append(helper.make_node("Identity", [p + "crop"], [net_in]))
        nodes += list(graph.node)
        if member.flip:
            inits.append(_const(p + "two_n_d", np.array([2, -1, card.embedding_dim], np.int64)))
            nodes += [
                helper.make_node("Reshape", [net_out, p + "two_n_d"], [p + "views"]),
                helper.make_node("ReduceMean", [p + "views"], [p + "mean"], axes=[0], keepdims=0),
            ]
        else:
            nodes.append(helper.make_node("Identity", [net_out], [p + "mean"]))
        nodes += [
            helper.make_node("LpNormalization", [p + "mean"], [p + "unit"], axis=1, p=2),
            helper.make_node("Mul", [p + "unit", p + "scale"], [p + "scaled"]),
        ]
        parts.append(p + "scaled")
    nodes += [
        helper.make_node("Concat", parts, ["fz_concat"], axis=1),
        helper.make_node("LpNormalization", ["fz_concat"], ["embedding"], axis=1, p=2),
    ]
    dim = sum(c.embedding_dim for c in cards)
    graph = helper.make_graph(
        nodes,
        "facegate_fused",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", canvas_size, canvas_size, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", FUSED_OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def fused_reference(
    canvases: np.ndarray, members: Sequence[Member], canvas: np.ndarray, embed: Sequence
) -> np.ndarray:
    """Slow reference: each member's Embedder on numpy-cut crops, flipped, weighted, concatenated.

    ``embed[k]`` embeds uint8 crops with member ``k`` (e.g. ``Embedder(member.model_dir).embed``).
    """
    total = sum(m.weight for m in members)
    parts = []
    for member, fn in zip(members, embed, strict=True):
        card = member.card
        crops = np.stack([member_crop(c, canvas, card) for c in canvases])
        e = fn(crops)
        if member.flip:
            e = (e + fn(crops[:, :, ::-1, :].copy())) / 2.0
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        parts.append(e * math.sqrt(member.weight / total))
    out = np.concatenate(parts, axis=1)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def write_fused_model(
    members: Sequence[Member],
    out_dir: Path,
    canvas_size: int,
    name: str,
    version: str,
    calibration: dict | None = None,
    canvas: np.ndarray | None = None,
) -> Path:
    """Write ``out_dir/model.onnx`` (the composed graph) and its card; returns the card's path.

    The card's licence and training data list every member's; ``fusion`` records the members
    (name, version, sha256, weight, flip) so that the composition can be rebuilt and checked.
    ``calibration`` defaults to a placeholder: run ``facegate-train calibrate`` next. ``canvas``
    (5 points) defaults to :func:`canvas_template` of the members; pass one to build a single
    member in another fused model's frame (the weight search does).
    """
    from training.export.default_card import placeholder_calibration
    from training.export.onnx_export import write_model_card

    cards = [m.card for m in members]
    canvas = canvas_template(cards, canvas_size) if canvas is None else np.asarray(canvas, np.float64)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(build_fused_graph(members, canvas_size, canvas), str(out_dir / "model.onnx"))
    fusion = [
        {"name": c.name, "version": c.version, "sha256": c.sha256, "weight": m.weight, "flip": m.flip,
         "template": c.alignment.template, "size": list(c.alignment.size)}
        for m, c in zip(members, cards, strict=True)
    ]  # fmt: skip
    card_path = write_model_card(
        out_dir,
        name=name,
        version=version,
        alignment={
            "size": (canvas_size, canvas_size),
            "template": [tuple(map(float, p)) for p in canvas.round(4)],
            "method": "similarity",
            "notes": "a common canvas holding every member's crop; each member's crop is cut from it "
            "inside the graph (training.export.fusion)",
        },
        calibration=calibration or placeholder_calibration().model_dump(),
        evaluation={},
        license=" + ".join(dict.fromkeys(c.license for c in cards)),
        training_data=[
            *(
                d
                for c in cards
                for d in c.training_data
                if not d.get("name", "").startswith("calibration only")
            ),
            FUSED_CALIBRATION_DATA,
        ],
        provenance="fused by training.export.fusion from: "
        + "; ".join(
            f"{c.name} {c.version} (weight {m.weight:g}, flip {m.flip})"
            for m, c in zip(members, cards, strict=True)
        ),
        embedding_dim=sum(c.embedding_dim for c in cards),
    )
    card = load_card(out_dir, verify_hash=False)  # write_model_card has just hashed the file
    data = card.model_dump(mode="json")
    data["fusion"] = fusion
    from service.model_card import write_card

    write_card(ModelCard.model_validate(data), out_dir)
    return card_path
