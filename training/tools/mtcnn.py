"""Convert the MIT-licensed MTCNN weights shipped in the facenet-pytorch wheel to three ONNX files.

The networks are re-declared here (facenet-pytorch's PNet/RNet/ONet layouts, Zhang et al. 2016);
their state dicts are read straight out of the wheel, so neither facenet-pytorch nor torchvision
has to be importable. Each exported graph takes ``image``: float32 [N, 3, H, W] RGB pixel values
in 0..255 (float so that area-resampled pyramid levels and crops need not be rounded) and does the
MTCNN normalisation ``(x - 127.5) / 128`` itself.

    facegate-train convert-mtcnn --wheel facenet_pytorch-2.6.0-py3-none-any.whl --out models/mtcnn
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

log = logging.getLogger(__name__)

NET_NAMES = ("pnet", "rnet", "onet")
PAPER = (
    "K. Zhang, Z. Zhang, Z. Li, Y. Qiao, 'Joint Face Detection and Alignment Using Multitask Cascaded "
    "Convolutional Networks', IEEE Signal Processing Letters 23(10):1499-1503, 2016. arXiv:1604.02878"
)


def _conv(cin: int, cout: int, k: int) -> tuple[nn.Conv2d, nn.PReLU]:
    return nn.Conv2d(cin, cout, kernel_size=k), nn.PReLU(cout)


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 10, 3)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(10, 16, 3)
        self.conv3, self.prelu3 = _conv(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        prob = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return self.conv4_2(x), prob


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 28, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(28, 48, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(48, 64, 2)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights were ported from a (W, H, C)-ordered flatten: keep that order.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output net on 48x48 crops: score, box regression and 5 landmarks (x1..x5, y1..y5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 32, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(32, 64, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(64, 64, 3)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = _conv(64, 128, 2)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


class PixelInput(nn.Module):
    """Wraps a net so that it takes RGB pixel values 0..255 and normalises inside the graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(normalise(image))


def normalise(image: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] pixel values 0..255 -> the net's input, scaled as facenet-pytorch does."""
    return (image - 127.5) * 0.0078125


@dataclass(frozen=True)
class NetSpec:
    factory: Callable[[], nn.Module]
    outputs: tuple[str, ...]
    crop: int | None  # fixed input side, None for the fully convolutional PNet


NETS: dict[str, NetSpec] = {
    "pnet": NetSpec(PNet, ("reg", "prob"), None),
    "rnet": NetSpec(RNet, ("reg", "prob"), 24),
    "onet": NetSpec(ONet, ("reg", "landmarks", "prob"), 48),
}


def net_spec(name: str) -> NetSpec:
    if name not in NETS:
        raise ValueError(f"unknown MTCNN net {name!r}; valid: {', '.join(NETS)}")
    return NETS[name]


@dataclass(frozen=True)
class WeightSource:
    """Raw ``.pt`` bytes of the three nets plus the licence text, and where they came from."""

    label: str
    weights: dict[str, bytes]
    license_text: str
    archive_sha256: str | None = None  # of the wheel file, when read from one


def read_wheel(wheel: Path) -> WeightSource:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        weights = {n: zf.read(f"facenet_pytorch/data/{n}.pt") for n in NET_NAMES}
        lic = [p for p in names if p.endswith(".dist-info/LICENSE.md") or p.endswith(".dist-info/LICENSE")]
        if not lic:
            raise ValueError(f"{wheel} holds no LICENSE(.md) in its dist-info")
        license_text = zf.read(lic[0]).decode("utf-8")
    return WeightSource(wheel.name, weights, license_text, sha256(wheel.read_bytes()))


def read_installed() -> WeightSource:
    """The installed facenet-pytorch distribution's files, located without importing it."""
    try:
        dist = metadata.distribution("facenet-pytorch")
    except metadata.PackageNotFoundError as exc:
        raise ValueError("facenet-pytorch is not installed: pass --wheel PATH") from exc
    weights = {n: Path(str(dist.locate_file(f"facenet_pytorch/data/{n}.pt"))).read_bytes() for n in NET_NAMES}
    license_text = next(
        (dist.read_text(n) for n in ("LICENSE.md", "LICENSE") if dist.read_text(n)),
        None,
    )
    if license_text is None:
        raise ValueError("the installed facenet-pytorch has no LICENSE file in its metadata")
    return WeightSource(f"facenet-pytorch {dist.version} (installed)", weights, license_text)


def load_net(name: str, source: WeightSource) -> nn.Module:
    net = net_spec(name).factory()
    state = torch.load(io.BytesIO(source.weights[name]), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def export_net(name: str, net: nn.Module, path: Path) -> None:
    spec = net_spec(name)
    side = spec.crop or 64
    example = torch.zeros(2, 3, side, side, dtype=torch.float32)
    axes = {0: "batch", 2: "height", 3: "width"} if spec.crop is None else {0: "batch"}
    dynamic = {"image": axes} | {out: {0: "batch"} for out in spec.outputs}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter is what we want
        torch.onnx.export(
            PixelInput(net),
            (example,),
            str(path),
            input_names=["image"],
            output_names=list(spec.outputs),
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )


def check_parity(
    name: str, net: nn.Module, path: Path, rng: np.random.Generator, atol: float = 1e-4
) -> float:
    """Largest |torch - onnxruntime| over random pixel batches; raises RuntimeError above ``atol``."""
    spec = net_spec(name)
    shapes = (
        [(3, spec.crop, spec.crop), (1, spec.crop, spec.crop)] if spec.crop else [(1, 12, 12), (2, 37, 53)]
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n, h, w in shapes:
        image = rng.uniform(0.0, 255.0, size=(n, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            expected = [t.numpy() for t in net(normalise(torch.from_numpy(image)))]
        got = sess.run(list(spec.outputs), {"image": image})
        for out, e, g in zip(spec.outputs, expected, got, strict=True):
            if e.shape != g.shape:
                raise RuntimeError(f"{name}.{out}: torch shape {e.shape} != onnxruntime {g.shape}")
            worst = max(worst, float(np.abs(e - g).max()))
    if worst > atol:
        raise RuntimeError(f"{name}: onnxruntime differs from torch by {worst:.2e} > {atol:.0e}")
    return worst


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provenance(source: WeightSource, out: Path, command: str) -> str:
    lines = [
        "# MTCNN ONNX models: provenance",
        "",
        "Face detection with 5 landmarks (multi-task cascaded CNNs):",
        "",
        f"- Method: {PAPER}",
        "- Weights: the PNet/RNet/ONet state dicts `facenet_pytorch/data/{pnet,rnet,onet}.pt`",
        f"  from `{source.label}`",
        "  (https://github.com/timesler/facenet-pytorch, MIT licence, see LICENSE beside this file).",
        "- Converted by `training/tools/mtcnn.py` (own re-declaration of the three nets; torch -> ONNX",
        "  opset 17; input `image` float32 [N,3,H,W] RGB pixel values 0..255, normalisation",
        "  `(x - 127.5) * 0.0078125` inside the graph).",
        f"- Command: `{command}` (torch {torch.__version__}, onnx exporter: TorchScript)",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    if source.archive_sha256:
        lines.append(f"| source wheel {source.label} | `{source.archive_sha256}` |")
    lines += [f"| source {n}.pt | `{sha256(source.weights[n])}` |" for n in NET_NAMES]
    lines += [f"| {n}.onnx | `{sha256((out / f'{n}.onnx').read_bytes())}` |" for n in NET_NAMES]
    lines += [
        "",
        "Outputs: `pnet` -> `reg` [N,4,h,w], `prob` [N,h,w] (dynamic N, H, W);",
        "`rnet` (24x24) -> `reg` [N,4], `prob` [N]; `onet` (48x48) -> `reg` [N,4], `landmarks` [N,10]",
        "(x1..x5 then y1..y5, as fractions of the crop), `prob` [N]. `prob` is the softmax face probability.",
        "",
    ]
    return "\n".join(lines)


def convert(source: WeightSource, out: Path, seed: int = 0, command: str = "") -> dict[str, float]:
    """Export the three nets into ``out``, check parity, write LICENSE and PROVENANCE.md."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    errors = {}
    for name in NET_NAMES:
        net = load_net(name, source)
        path = out / f"{name}.onnx"
        export_net(name, net, path)
        errors[name] = check_parity(name, net, path, rng)
        log.debug("%s: %d bytes, max |torch - ort| = %.2e", path.name, path.stat().st_size, errors[name])
    (out / "LICENSE").write_text(source.license_text.rstrip() + "\n")
    (out / "PROVENANCE.md").write_text(
        provenance(source, out, command or f"facegate-train convert-mtcnn --out {out}")
    )
    return errors
