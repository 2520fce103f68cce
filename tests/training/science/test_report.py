"""The README block, the claims and the plots come from results.json alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.science.report import BEGIN, END, write_report

SCHEMES = ("contrastive", "triplet_constant", "triplet_increasing", "triplet_scheduled", "circle")


def _run(scheme: str, seed: int, acc: float) -> dict:
    curve = {k: [0.5, 0.4, 0.3] for k in ("loss", "active_ratio", "easy_share", "grad_norm_median",
                                            "intra_class_var", "inter_class_var")}  # fmt: skip
    curve["margin"] = [0.1, 0.15, 0.2] if scheme == "triplet_scheduled" else [0.1, 0.1, 0.1]
    return {"experiment": "A", "scheme": scheme, "seed": seed, "lfw_accuracy": acc, "tar_at_far_1e-3": acc - 0.01,
            "margin_first": curve["margin"][0], "margin_last": curve["margin"][-1], "easy_share_last": 0.3,
            "epochs": 3, "train_s": 1.0, "curves": curve}  # fmt: skip


def test_report_from_results_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    runs = [_run(s, seed, 0.98 + (0.004 if s == "circle" else 0.0) + rng.normal(0, 0.0005))
            for seed in range(10) for s in SCHEMES]  # fmt: skip
    runs.append(_run("contrastive", 10, 0.98))  # a seed the other schemes lack: left out of every comparison
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{BEGIN}\nold\n{END}\n\n## next\n")
    md = write_report({"runs": runs}, tmp_path / "science", readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("# title") and text.endswith("## next\n")
    assert md in text
    assert "| contrastive | 10 |" in md
    assert "circle beats triplet: circle vs triplet_constant | lfw_accuracy | 10 |" in md
    row = next(line for line in md.splitlines() if "circle vs triplet_constant | lfw_accuracy" in line)
    assert "**supported**" in row
    for name in ("accuracy_A.png", "margin_A.png", "optimisation_A.png", "summary.json", "table.md"):
        assert (tmp_path / "science" / name).is_file()
