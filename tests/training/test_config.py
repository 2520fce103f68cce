"""Run config: file + base + overrides, unknown keys rejected, saved with the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import CONFIG_FILE, RunConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def test_file_with_base_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        '[data]\ncache = "var/cache"\n[loss]\nname = "triplet"\nkwargs = { margin = 0.2 }\n'
        "[optim]\nlr = 0.001\n[train]\nepochs = 3\n"
    )
    (tmp_path / "exp.toml").write_text('base = "base.toml"\n[optim]\nweight_decay = 0.0\n')
    cfg = load_config(
        tmp_path / "exp.toml",
        [
            "loss.name=circle",
            'loss.kwargs={"m": 0.25}',
            "loss.kwargs.gamma=64",
            "optim.lr=0.05",
            "train.seed=3",
        ],
    )
    assert cfg.loss.name == "circle"
    assert cfg.loss.kwargs == {"m": 0.25, "gamma": 64}
    assert cfg.optim.lr == 0.05 and cfg.optim.weight_decay == 0.0  # override, then the file over its base
    assert cfg.train.epochs == 3 and cfg.train.seed == 3
    assert cfg.data.cache == Path("var/cache")


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": {"cache": "x"}, "sampler": {"p": 8, "k": 2}}))
    cfg = load_config(path)
    assert (cfg.sampler.p, cfg.sampler.k) == (8, 2)


@pytest.mark.parametrize(
    "override",
    ["optim.lrr=0.1", "nosection.x=1", "train.epochs=0", "loss.views=3", "sampler.p=many", "optim"],
)
def test_unknown_or_invalid_keys_are_errors(override: str) -> None:
    with pytest.raises(ValueError):
        load_config(None, ["data.cache=x", override])


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ncache = "x"\n[train]\nepoch = 3\n')
    with pytest.raises(ValueError, match="epoch"):
        load_config(path)


def test_margin_schedule_needs_the_triplet_loss() -> None:
    with pytest.raises(ValueError, match="triplet"):
        load_config(None, ["data.cache=x", "loss.name=circle", "margin.name=difficulty"])


def test_config_is_frozen() -> None:
    cfg = load_config(None, ["data.cache=x"])
    with pytest.raises(ValueError):
        cfg.train.epochs = 5  # type: ignore[misc]


def test_saved_config_reloads_identically(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.cache=x", "loss.name=supcon", "loss.kwargs.temperature=0.07"])
    path = cfg.save(tmp_path / "run")
    assert path.name == CONFIG_FILE
    assert load_config(path) == cfg
    assert RunConfig.model_validate_json(path.read_text()) == cfg


def test_shipped_configs_are_valid() -> None:
    files = sorted(CONFIGS.glob("*.toml"))
    names = {f.stem for f in files}
    expected = {
        "base",
        "contrastive",
        "triplet_constant",
        "triplet_scheduled",
        "triplet_increasing",
        "circle",
        "supcon",
        "ntxent",
        "cosine_contrastive",
    }
    assert expected <= names
    for f in files:
        cfg = load_config(f)
        assert cfg.train.out_dir.name == f.stem or f.stem == "base"


def test_shipped_configs_build_their_objective() -> None:
    from training.engine.objective import build_objective

    for f in sorted(CONFIGS.glob("*.toml")):
        cfg = load_config(f)
        objective = build_objective(cfg, num_classes=10, embedding_dim=cfg.model.embedding_dim)
        assert objective.name == cfg.loss.name
        assert objective.views == (2 if cfg.loss.name == "ntxent" else cfg.loss.views)


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("margin.kwargs.treshold=0.9", "initial, max_margin, step, threshold"),
        ("loss.kwargs.margni=0.3", "margin"),
        ("miner.kwargs.typo=1", "valid names"),
        ("model.kwargs.widht=0.5", "valid names"),
    ],
)
def test_a_typo_in_component_arguments_lists_the_valid_names(override: str, valid: str) -> None:
    base = ["data.cache=var/cache", "loss.name=triplet", "miner.name=batch_hard", "margin.name=difficulty"]
    with pytest.raises(ValueError, match="takes no argument") as err:
        load_config(None, [*base, override])
    assert valid in str(err.value)
