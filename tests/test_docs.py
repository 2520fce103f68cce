"""The README documents every setting and the two first commands that CI runs."""

from pathlib import Path

from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [
        f"FACEGATE_{n.upper()}" for n in Settings.model_fields if f"`FACEGATE_{n.upper()}`" not in README
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    test_command = next(line for line in ci.splitlines() if "pytest" in line).strip()
    assert test_command in README
