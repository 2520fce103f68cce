"""The README documents every setting (with its real default) and the two first commands that CI runs."""

import re
from pathlib import Path

from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [
        f"FACEGATE_{n.upper()}" for n in Settings.model_fields if f"`FACEGATE_{n.upper()}`" not in README
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_the_settings_table_states_the_real_defaults():
    table = README[README.index("## Settings\n") : README.index("## Web console")]
    rows = re.findall(r"^\| `FACEGATE_([A-Z0-9_]+)` \| `([^`]*)` \|", table, re.M)
    described = {"DATABASE_URL", "MODELS_DIR"}  # defaults worded in the table, not printed
    settings = Settings()
    wrong = [
        (name, doc, getattr(settings, name.lower()))
        for name, doc in rows
        if name not in described and name.lower() in Settings.model_fields
        and doc not in (str(getattr(settings, name.lower())), repr(getattr(settings, name.lower())))
    ]  # fmt: skip
    assert len(rows) > 40 and not wrong, f"README's Settings table disagrees with service.settings: {wrong}"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    test_command = next(line for line in ci.splitlines() if "pytest" in line).strip()
    assert test_command in README
