"""The table, the claims and the plots of docs/science/, generated from results.json alone
(``python bench/science.py report``), and the README block between the science markers."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.science.stats import family

BEGIN, END = "<!-- science:begin (python bench/science.py report) -->", "<!-- science:end -->"
ORDER = (
    "contrastive",
    "triplet_constant",
    "triplet_increasing",
    "triplet_scheduled",
    "circle",
    "supcon",
    "ntxent",
    "cosine_contrastive",
)
EXPERIMENTS = {
    "A": "A: residual MLP adapter on frozen SFace embeddings (models/sface)",
    "B": "B: dlib ResNet (models/dlib), its last residual unit + fc fine-tuned on cached activations",
}


def _curve(key: str, index: int) -> Callable[[dict], float]:
    return lambda r: float(r["curves"][key][index])


def _neg(fn: Callable[[dict], float]) -> Callable[[dict], float]:
    return lambda r: -fn(r)


# (claim, source, a, b, metric name, value; "a > b" in value is the claim's direction)
CLAIMS: tuple[tuple[str, str, str, str, str, Callable[[dict], float]], ...] = (
    ("triplet beats contrastive", "001", "triplet_constant", "contrastive", "lfw_accuracy",
     lambda r: r["lfw_accuracy"]),
    ("triplet beats contrastive", "001", "triplet_constant", "contrastive", "tar_at_far_1e-3",
     lambda r: r["tar_at_far_1e-3"]),
    ("scheduled margin beats constant", "002", "triplet_scheduled", "triplet_constant", "lfw_accuracy",
     lambda r: r["lfw_accuracy"]),
    ("scheduled margin beats constant", "002", "triplet_scheduled", "triplet_constant", "tar_at_far_1e-3",
     lambda r: r["tar_at_far_1e-3"]),
    ("scheduled margin beats increasing", "002", "triplet_scheduled", "triplet_increasing", "lfw_accuracy",
     lambda r: r["lfw_accuracy"]),
    ("scheduled margin beats increasing", "002", "triplet_scheduled", "triplet_increasing", "tar_at_far_1e-3",
     lambda r: r["tar_at_far_1e-3"]),
    ("circle beats triplet", "000", "circle", "triplet_constant", "lfw_accuracy", lambda r: r["lfw_accuracy"]),
    ("circle beats triplet", "000", "circle", "triplet_constant", "tar_at_far_1e-3",
     lambda r: r["tar_at_far_1e-3"]),
    ("triplet keeps more intra-class variance", "001", "triplet_constant", "contrastive",
     "intra_class_var (last epoch)", _curve("intra_class_var", -1)),
    ("triplet keeps more inter-class variance", "001", "triplet_constant", "contrastive",
     "inter_class_var (last epoch)", _curve("inter_class_var", -1)),
    ("triplet makes larger updates early", "001", "triplet_constant", "contrastive",
     "grad_norm_median (epoch 1)", _curve("grad_norm_median", 0)),
    ("triplet makes fewer updates early", "001", "triplet_constant", "contrastive",
     "-active_ratio (epoch 1)", _neg(_curve("active_ratio", 0))),
)  # fmt: skip


def by_scheme(runs: list[dict], experiment: str) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in runs:
        if r["experiment"] == experiment:
            out[r["scheme"]][int(r["seed"])] = r
    return {s: out[s] for s in ORDER if s in out}


def claims(groups: dict[str, dict[int, dict]], alpha: float = 0.05) -> list[dict]:
    rows, meta = [], []
    for name, source, a, b, metric, fn in CLAIMS:
        if a not in groups or b not in groups:
            continue
        seeds = sorted(set(groups[a]) & set(groups[b]))
        if len(seeds) < 2:
            continue
        va = np.array([fn(groups[a][s]) for s in seeds])
        vb = np.array([fn(groups[b][s]) for s in seeds])
        rows.append((f"{name} ({metric})", va, vb))
        meta.append({"name": name, "source": source, "a": a, "b": b, "metric": metric, "seeds": seeds})
    if not rows:
        return []
    return [{**m, **r} for m, r in zip(meta, family(rows, alpha), strict=True)]


def _ms(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def scheme_table(groups: dict[str, dict[int, dict]]) -> list[dict]:
    out = []
    for scheme, runs in groups.items():
        rs = [runs[s] for s in sorted(runs)]
        acc, tar = _ms([r["lfw_accuracy"] for r in rs]), _ms([r["tar_at_far_1e-3"] for r in rs])
        out.append({
            "scheme": scheme, "seeds": len(rs), "lfw_accuracy": acc, "tar_at_far_1e-3": tar,
            "margin_first": float(np.mean([r["margin_first"] for r in rs])),
            "margin_last": (min(r["margin_last"] for r in rs), max(r["margin_last"] for r in rs)),
            "easy_share_last": float(np.mean([r["easy_share_last"] for r in rs])),
            "epochs": rs[0]["epochs"], "train_s": float(np.mean([r["train_s"] for r in rs])),
            "loss_decay": float(np.mean([r["curves"]["loss"][-1] / r["curves"]["loss"][0] for r in rs])),
            "active_first_last": (float(np.mean([r["curves"]["active_ratio"][0] for r in rs])),
                                  float(np.mean([r["curves"]["active_ratio"][-1] for r in rs]))),
            "grad_median_first_last": (float(np.mean([r["curves"]["grad_norm_median"][0] for r in rs])),
                                       float(np.mean([r["curves"]["grad_norm_median"][-1] for r in rs]))),
            "intra_inter_last": (float(np.mean([r["curves"]["intra_class_var"][-1] for r in rs])),
                                 float(np.mean([r["curves"]["inter_class_var"][-1] for r in rs]))),
        })  # fmt: skip
    return out


def _fmt(v: float, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else "n/a"


def _markdown(experiment: str, table: list[dict], cl: list[dict], baseline: dict | None) -> str:
    lines = [f"#### Experiment {EXPERIMENTS.get(experiment, experiment)}", ""]
    if baseline:
        lines += [f"Before training (the pretrained network as it is): LFW accuracy "
                  f"{baseline['lfw_accuracy']:.4f}, TAR@FAR=1e-3 {baseline['tar_at_far_1e-3']:.4f}.", ""]  # fmt: skip
    lines += [
        "| scheme | seeds | LFW accuracy (mean ± std) | TAR@FAR=1e-3, all pairs (mean ± std) | margin first → last "
        "(range over seeds) | easy share, last epoch | active ratio first → last | loss last/first "
        "| intra / inter-class var, last | train s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in table:
        lo, hi = t["margin_last"]
        last = f"{lo:.2f}" if lo == hi else f"{lo:.2f}–{hi:.2f}"
        lines.append(
            f"| {t['scheme']} | {t['seeds']} | {_fmt(t['lfw_accuracy'][0])} ± {_fmt(t['lfw_accuracy'][1])} "
            f"| {_fmt(t['tar_at_far_1e-3'][0])} ± {_fmt(t['tar_at_far_1e-3'][1])} | {t['margin_first']:.2f} → {last} "
            f"| {t['easy_share_last']:.3f} | {t['active_first_last'][0]:.3f} → {t['active_first_last'][1]:.3f} "
            f"| {t['loss_decay']:.3f} | {t['intra_inter_last'][0]:.3f} / {t['intra_inter_last'][1]:.3f} "
            f"| {t['train_s']:.0f} |"
        )
    if cl:
        lines += [
            "",
            f"Claims (a beats b), paired by seed; Holm across the {len(cl)} rows of this experiment; detectable "
            f"difference = the true a − b a paired t test finds with 80 % power at the strictest Holm level "
            f"(α = {cl[0]['alpha_holm_strictest']:.4f}).",
            "",
            "| text | claim (a vs b) | metric | n | a − b [95 % CI] | d_z | paired t p (Holm) | Wilcoxon p (Holm) "
            "| detectable difference | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in cl:
            lines.append(
                f"| {c['source']} | {c['name']}: {c['a']} vs {c['b']} | {c['metric']} | {c['n']} "
                f"| {c['mean_diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {_fmt(c['dz'], 2)} "
                f"| {c['p_t_holm']:.3g} | {c['p_wilcoxon_holm']:.3g} | {_fmt(c['detectable_difference'])} "
                f"| **{c['verdict']}** |"
            )
    lines += ["", f"![accuracy per scheme, experiment {experiment}](docs/science/accuracy_{experiment}.png)",
              f"![easy share and margin per epoch, experiment {experiment}](docs/science/margin_{experiment}.png)",
              f"![optimisation per epoch, experiment {experiment}](docs/science/optimisation_{experiment}.png)", ""]  # fmt: skip
    return "\n".join(lines)


def _plots(
    out: Path, experiment: str, groups: dict[str, dict[int, dict]], baseline: dict | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    names = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "lfw_accuracy", "LFW View 2 accuracy"),
                           (axes[1], "tar_at_far_1e-3", "TAR @ FAR 1e-3 (all cross-identity pairs)")):  # fmt: skip
        for i, n in enumerate(names):
            v = np.array([groups[n][s][key] for s in sorted(groups[n])])
            half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
            ax.errorbar([i], [v.mean()], yerr=[half], fmt="o", color="tab:blue", capsize=5)
            ax.scatter(np.full(len(v), i) + 0.15, v, s=6, color="k", alpha=0.5)
        if baseline:
            ax.axhline(baseline[key], color="gray", linestyle="--", label="before training")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_title(f"{title}\nmean with 95 % CI over seeds; dots: seeds", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(EXPERIMENTS.get(experiment, experiment), fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"accuracy_{experiment}.png", dpi=100)
    plt.close(fig)

    def mean_curve(n: str, key: str) -> np.ndarray:
        cs = [groups[n][s]["curves"][key] for s in sorted(groups[n])]
        m = min(len(c) for c in cs)
        return np.nanmean(np.array([c[:m] for c in cs], dtype=np.float64), axis=0)

    trip = [n for n in names if n.startswith("triplet")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for n in trip:
        for ax, key in ((axes[0], "easy_share"), (axes[1], "margin")):
            y = mean_curve(n, key)
            ax.plot(np.arange(1, len(y) + 1), y, marker=".", label=n)
    axes[0].axhline(0.95, color="gray", linestyle=":", label="scheduler threshold 0.95")
    axes[0].set_ylabel("share of easy triplets (all valid triplets)")
    axes[1].set_ylabel("margin trained at")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"easy share and margin per epoch, mean over seeds (experiment {experiment})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"margin_{experiment}.png", dpi=100)
    plt.close(fig)

    keys = (("grad_norm_median", "median gradient norm per step"), ("active_ratio", "active ratio"),
            ("intra_class_var", "intra-class variance (train)"), ("inter_class_var", "inter-class variance (train)"))  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for n in names:
        for ax, (key, label) in zip(axes, keys, strict=True):
            y = mean_curve(n, key)
            ax.plot(np.arange(1, len(y) + 1), y, label=n)
            ax.set_title(label, fontsize=9)
    axes[0].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"optimisation_{experiment}.png", dpi=100)
    plt.close(fig)


def write_report(doc: dict, out: Path, readme: Path | None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    runs = doc["runs"]
    summary, parts = {}, []
    for experiment in sorted({r["experiment"] for r in runs}):
        groups = by_scheme(runs, experiment)
        # only seeds every scheme of the experiment has: each comparison sees the same seeds
        common = set.intersection(*(set(g) for g in groups.values())) if groups else set()
        groups = {s: {seed: g[seed] for seed in sorted(common)} for s, g in groups.items() if s in ORDER}
        if not groups:
            continue
        table, cl = scheme_table(groups), claims(groups)
        baseline = doc.get("baselines", {}).get(experiment)
        summary[experiment] = {"schemes": table, "claims": cl, "baseline": baseline}
        parts.append(_markdown(experiment, table, cl, baseline))
        _plots(out, experiment, groups, baseline)
    md = "\n".join(parts)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (out / "table.md").write_text(md + "\n")
    if readme is not None and readme.is_file():
        text = readme.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            readme.write_text(f"{head}{BEGIN}\n{md}\n{END}{tail}")
    return md
