"""training/ is grouped by concern: a short root, subpackages with a public __init__, tests mirroring it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"


def _subpackages(root: Path) -> set[str]:
    return {p.parent.name for p in root.glob("*/__init__.py")}


def test_the_root_is_short_and_concerns_are_subpackages() -> None:
    root_modules = sorted(p.name for p in TRAINING.glob("*.py"))
    assert len(root_modules) <= 8, root_modules
    packages = _subpackages(TRAINING)
    assert len(packages) >= 6 and {"metric", "engine", "evaluation", "export", "dlib", "retrain"} <= packages


def test_every_subpackage_states_its_public_names() -> None:
    import importlib

    for name in sorted(_subpackages(TRAINING) - {"configs"}):
        init = (TRAINING / name / "__init__.py").read_text()
        assert init.startswith('"""'), f"training/{name}/__init__.py has no docstring"
        module = importlib.import_module(f"training.{name}")
        for public in getattr(module, "__all__", []):
            assert hasattr(module, public), f"training.{name}.{public}"


def test_tests_mirror_the_layout() -> None:
    tested = _subpackages(REPO / "tests" / "training")
    assert tested <= _subpackages(TRAINING), tested - _subpackages(TRAINING)
