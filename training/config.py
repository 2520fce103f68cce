"""The typed, frozen configuration of a training run.

A run is described by one file (TOML, JSON, or YAML when PyYAML is installed) that may name a
``base`` file it overrides (path relative to itself; sections merge key by key), plus
command-line overrides ``section.key=value`` (the value parsed as JSON when it parses, else a
string: ``loss.name=circle``, ``optim.lr=0.05``, ``loss.kwargs={"m": 0.25}``,
``loss.kwargs.gamma=80``). Unknown keys are errors. The resolved config is saved as
``config.json`` in every run's output folder.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_FILE = "config.json"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class DataConfig(_Section):
    cache: Path = Field(description="aligned-crop cache from `facegate-train prepare`")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of identities held out")
    val_pairs: int = Field(1000, ge=0, description="genuine (and as many impostor) validation pairs")
    min_images: int = Field(2, ge=1, description="identities with fewer images are not sampled")
    small_identities: Literal["replace", "skip"] = Field("replace", description="identities with < K images")
    batches_per_epoch: int | None = Field(
        None, ge=1, description="steps per epoch; default: images // (ranks * P * K)"
    )
    workers: int = Field(0, ge=0, description="DataLoader worker processes")


class ModelConfig(_Section):
    backbone: str = "mobilefacenet"
    embedding_dim: int = Field(128, ge=2)
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra backbone arguments")
    init: Path | None = Field(None, description="checkpoint or state_dict to start from")


class LossConfig(_Section):
    name: str = "triplet"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    distance: str | None = Field(None, description="training.metric.distances name, for losses taking one")
    reducer: Literal["mean", "nonzero_mean"] | None = None
    views: Literal[1, 2] = Field(1, description="augmented views per image (NT-Xent always uses 2)")


class MinerConfig(_Section):
    name: str | None = Field(None, description="triplet miner (batch_all, batch_hard, semi_hard)")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class MarginConfig(_Section):
    name: str | None = Field(None, description="constant, linear, exponential, difficulty (triplet only)")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class SamplerConfig(_Section):
    p: int = Field(16, ge=2, description="identities per batch (per rank)")
    k: int = Field(4, ge=2, description="images per identity")


class AugmentConfig(_Section):
    flip: float = Field(0.5, ge=0.0, le=1.0)
    brightness: float = Field(0.2, ge=0.0, lt=1.0)
    contrast: float = Field(0.2, ge=0.0, lt=1.0)
    saturation: float = Field(0.2, ge=0.0, lt=1.0)
    shift: float = Field(0.04, ge=0.0, lt=0.5)
    scale: float = Field(0.05, ge=0.0, lt=0.5)


class OptimConfig(_Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    warmup_epochs: float = Field(1.0, ge=0.0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0, description="cosine floor, as a share of lr")
    grad_clip: float | None = Field(None, gt=0.0)


class TrainConfig(_Section):
    epochs: int = Field(20, ge=1)
    seed: int = 0
    out_dir: Path = Path("runs/default")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    amp: bool = Field(False, description="bfloat16 autocast on CUDA")
    progress: bool = True
    easy_margin: float = Field(
        0.2, ge=0.0, description="margin of the easy-triplet share of non-triplet losses"
    )
    val_batch_size: int = Field(256, ge=1)
    threads: int = Field(0, ge=0, description="torch CPU threads per process (0: torch default)")
    keep_freed_memory: bool = Field(
        True,
        description="glibc malloc reuses freed memory instead of re-faulting it (training.engine.allocator)",
    )


class RunConfig(_Section):
    data: DataConfig
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    miner: MinerConfig = MinerConfig()
    margin: MarginConfig = MarginConfig()
    sampler: SamplerConfig = SamplerConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.margin.name is not None and self.loss.name != "triplet":
            raise ValueError(f"a margin schedule needs the triplet loss, not {self.loss.name!r}")
        if self.miner.name is not None and self.loss.name != "triplet":
            raise ValueError(f"a triplet miner needs the triplet loss, not {self.loss.name!r}")
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"

    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / CONFIG_FILE
        path.write_text(self.to_json())
        return path


def _read(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    text = path.read_text()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10
            import tomli as tomllib
        data: Any = tomllib.loads(text)
    elif suffix == ".json":
        data = json.loads(text)
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ValueError(f"{path}: YAML configs need PyYAML; use TOML or JSON") from exc
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"{path}: unknown config format {suffix!r}; use .toml, .json or .yaml")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a table/object")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_layers(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's dict merged over its ``base`` chain; relative data/output paths stay as written."""
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"config base cycle: {' -> '.join(map(str, (*_seen, path)))}")
    data = _read(path)
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(read_layers(path.parent / str(base), (*_seen, path)), data)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; values are JSON when they parse, strings otherwise."""
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(raw.strip())
    return out


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a config file (with its bases) and apply overrides; invalid or unknown keys raise ValueError."""
    data = read_layers(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid training config: {exc}") from exc
    check_component_arguments(cfg)
    return cfg


def check_component_arguments(cfg: RunConfig) -> None:
    """Refuse ``kwargs`` the named loss, miner, margin schedule or backbone does not take, listing
    the valid names (``--set margin.kwargs.treshold=...`` fails here, not mid-run)."""
    from training.backbones import BACKBONES
    from training.metric.losses import LOSSES
    from training.metric.margin import MARGINS
    from training.metric.miners import MINERS

    sections: list[tuple[str, str | None, dict[str, Any], dict[str, Any]]] = [
        ("loss", cfg.loss.name, cfg.loss.kwargs, LOSSES),
        ("miner", cfg.miner.name, cfg.miner.kwargs, MINERS),
        ("margin", cfg.margin.name, cfg.margin.kwargs, MARGINS),
        ("model", cfg.model.backbone, cfg.model.kwargs, BACKBONES),
    ]
    for section, name, kwargs, registry in sections:
        if name is None:
            continue
        if name not in registry:
            raise ValueError(f"unknown {section} name {name!r}; valid names: {sorted(registry)}")
        params = inspect.signature(registry[name]).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            continue  # a wrapper that forwards its arguments checks them itself
        valid = sorted(p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(
                f"{section}.kwargs: {name!r} takes no argument {', '.join(map(repr, unknown))}; "
                f"valid names: {', '.join(valid)}"
            )
