"""``facegate-train``: prepare the aligned cache, train, export; evaluation and calibration.

    facegate-train prepare ../shared/data/celeba-aligned var/cache/celeba --labels-csv \\
        ../shared/data/celeba-aligned/labels.csv --assume-aligned fallback --min-face-size 20
    facegate-train train training/configs/triplet_scheduled.toml --set train.seed=1
    torchrun --nproc_per_node=2 -m training.cli train training/configs/base.toml   # DDP
    facegate-train export runs/triplet_scheduled models/mine --name mine --version 1
    facegate-train retrain --models-dir models --extra photos/   # adapter on the gallery, gate, publish
    torchrun --nproc_per_node=2 -m training.cli retrain --method finetune --models-dir models   # whole network, DDP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from service.settings import DEFAULT_MODEL
from training.cli_assets import assets_app
from training.paths import REPO_ROOT, DataMissing, paths

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FaceGate training toolkit")

# None: the settings' folder (training.paths: $FACEGATE_DATA, $FACEGATE_CACHE, else their defaults).
DataDir = Annotated[
    Path | None,
    typer.Option(help="shared data folder (lfw/, celeba-aligned/) [default: $FACEGATE_DATA, ../shared/data]"),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        help="embedding cache, one embedding per image and model [default: $FACEGATE_CACHE, var/eval-cache]"
    ),
]
ModelsDir = Annotated[Path, typer.Option(help="folder holding mtcnn/")]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def prepare(
    source: Annotated[Path, typer.Argument(help="folder of <identity>/<image>")],
    out: Annotated[Path, typer.Argument(help="cache folder to write (crops.npy, manifest.csv, meta.json)")],
    labels_csv: Annotated[
        Path | None, typer.Option(help="CSV path,identity (paths relative to SOURCE)")
    ] = None,
    backbone: Annotated[
        str, typer.Option(help="align for this backbone's input size and template")
    ] = "mobilefacenet",
    backbone_kwargs: Annotated[str, typer.Option(help="JSON arguments of the backbone")] = "{}",
    assume_aligned: Annotated[
        str, typer.Option(help="never | fallback (when no face is found) | always: map already-aligned crops")
    ] = "never",
    source_landmarks: Annotated[str, typer.Option(help="mean landmarks of the aligned set")] = "celeba",
    models_dir: ModelsDir = REPO_ROOT / "models",
    min_face_size: int = 40,
    max_side: int = 640,
    workers: Annotated[int, typer.Option(help="processes (0: this one)")] = 0,
    verbose: bool = False,
) -> None:
    """Detect and align every image once through the service pipeline and cache the crops."""
    _logging(verbose)
    from tqdm import tqdm

    from training.backbones import build_backbone
    from training.data.dataset import prepare_folder
    from training.data.prepare import PrepareOptions

    if assume_aligned not in ("never", "fallback", "always"):
        raise typer.BadParameter("--assume-aligned must be never, fallback or always")
    model = build_backbone(backbone, **json.loads(backbone_kwargs))
    opts = PrepareOptions(
        size=model.input_size,
        template=tuple((float(x), float(y)) for x, y in model.alignment_template),
        assume_aligned=assume_aligned,  # type: ignore[arg-type]
        source_landmarks=source_landmarks,
        models_dir=models_dir,
        min_face_size=min_face_size,
        max_side=max_side,
        workers=workers,
        extra={"backbone": backbone, "backbone_kwargs": json.loads(backbone_kwargs)},
    )
    cache = prepare_folder(
        source, out, opts, labels_csv, progress=lambda it, n: tqdm(it, total=n, desc="prepare", unit="img")
    )
    meta = cache.meta
    typer.echo(
        f"{out}: {meta['counts']['ok']} of {meta['images']} images aligned "
        f"({meta['methods']}), {meta['counts']['no_face']} without a face, {meta['counts']['error']} "
        f"unreadable; {len(cache.identities)} identities. Failures are listed in {out / 'manifest.csv'}"
    )


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="run config (.toml, .json or .yaml)")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override, e.g. --set loss.name=circle (repeatable)")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from the run folder's last checkpoint")] = False,
    resume_from: Annotated[Path | None, typer.Option(help="continue from this checkpoint")] = None,
    verbose: bool = False,
) -> None:
    """Train (under torchrun: with DDP); config.json, metrics.csv and checkpoints go to train.out_dir."""
    _logging(verbose)
    from training.config import load_config
    from training.engine.loop import main

    try:
        cfg = load_config(config, set_ or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG / --set") from exc
    result = main(cfg, resume_from if resume_from is not None else resume)
    if result.rows:
        last = result.rows[-1]
        typer.echo(
            f"{result.out_dir}: epoch {last['epoch']} loss {last['loss']:.4f} val acc {last['val_accuracy']}"
        )


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a training run folder (train.out_dir)")],
    out: Annotated[Path, typer.Argument(help="model folder to write (model.onnx + model.json)")],
    name: Annotated[str, typer.Option(help="model name in the card")] = "facegate-trained",
    version: Annotated[str, typer.Option(help="model version in the card")] = "0.1.0",
    license: Annotated[str, typer.Option(help="licence of the weights")] = "non-commercial research only",
    data_name: Annotated[str, typer.Option(help="training data, for the card")] = "CelebA (celeba-aligned)",
    data_terms: Annotated[str, typer.Option(help="terms of the training data")] = (
        "CelebA is published for non-commercial research purposes only"
    ),
    num_check: int = 64,
    min_tail: Annotated[int, typer.Option(help="impostor pairs needed above a tabulated FAR")] = 10,
    verbose: bool = False,
) -> None:
    """Export a run's last checkpoint to ONNX (parity-checked) with a provisional calibration."""
    _logging(verbose)
    from training.export.run import export_run

    card = export_run(
        run_dir,
        out,
        name=name,
        version=version,
        license=license,
        training_data=[{"name": data_name, "terms": data_terms}],
        num_check=num_check,
        min_tail=min_tail,
    )
    typer.echo(f"wrote {out / 'model.onnx'} and {card}")


@app.command()
def retrain(
    models_dir: Annotated[
        Path, typer.Option(envvar="FACEGATE_MODELS_DIR", help="the service's models folder")
    ] = (REPO_ROOT / "models"),
    database_url: Annotated[
        str, typer.Option(envvar="FACEGATE_DATABASE_URL", help="the service's database (the gallery)")
    ] = "sqlite:///./var/facegate.db",
    model: Annotated[
        str,
        typer.Option(
            envvar="FACEGATE_MODEL", help="model folder in use when models_dir/active.json is absent"
        ),
    ] = DEFAULT_MODEL,
    extra: Annotated[
        list[Path] | None, typer.Option(help="extra labelled photos <identity>/<photo> (repeatable)")
    ] = None,
    data_dir: DataDir = None,
    lfw: Annotated[
        bool, typer.Option(help="also gate on LFW View 1 test pairs when data_dir has them")
    ] = True,
    method: Annotated[
        str,
        typer.Option(help="adapter (on frozen embeddings of the model in use) or finetune (torch weights)"),
    ] = "adapter",
    adapter_loss: Annotated[
        str, typer.Option(help="adapter: cosine_contrastive or contrastive")
    ] = "cosine_contrastive",
    adapter_epochs: Annotated[int, typer.Option(help="adapter: epochs")] = 30,
    sources: Annotated[
        str,
        typer.Option(
            help="adapter: genuine-pair sources, comma-separated from view, extra, selftrain; auto: the real photos when there are any, else the views"
        ),
    ] = "auto",
    selftrain_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="FACEGATE_SELFTRAIN_DIR", help="probe crops the service kept (service.selftrain)"
        ),
    ] = None,
    every_hours: Annotated[
        float,
        typer.Option(envvar="FACEGATE_RETRAIN_EVERY_HOURS", help="stay up and run every H hours (0: once)"),
    ] = 0.0,
    after_enrolments: Annotated[
        int,
        typer.Option(
            envvar="FACEGATE_RETRAIN_AFTER_ENROLMENTS",
            help="stay up and run once N people were enrolled since the model in use was published (0: off)",
        ),
    ] = 0,
    check_seconds: Annotated[float, typer.Option(help="with a trigger: seconds between checks")] = 300.0,
    selftrain_retention_days: Annotated[
        float,
        typer.Option(
            envvar="FACEGATE_SELFTRAIN_RETENTION_DAYS", help="kept probes older than this are deleted"
        ),
    ] = 30.0,
    loss: Annotated[
        str, typer.Option(help="finetune: triplet (with the margin scheduler) or circle")
    ] = "triplet",
    epochs: Annotated[int, typer.Option(help="finetune: epochs")] = 5,
    lr: Annotated[float, typer.Option(help="finetune: AdamW learning rate (keep it small)")] = 1e-5,
    held_out: Annotated[
        float | None,
        typer.Option(help="share of the people held out for the gate [adapter 0.5, finetune 0.2]"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="largest regression of any metric that still publishes")
    ] = 0.01,
    seed: int = 0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="training config override (repeatable)")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="version of the new model (default <parent>-ft.<UTC>)")
    ] = None,
    dlib_dat: Annotated[
        Path | None, typer.Option(envvar="FACEGATE_DLIB_MODEL", help="dlib's .dat file")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="scratch folder (default models_dir/.retrain-work)")
    ] = None,
    device: str = "auto",
    min_people: int = 8,
    verbose: bool = False,
) -> None:
    """Adapt the model in use to the gallery (+ extra folders, + kept probes); publish a new version
    only when the gate finds a real gain. Exit code 0 published, 3 refused by the gate, 2 nothing to
    train on."""
    _logging(verbose)
    from training.retrain.job import RetrainOptions, run

    opts = RetrainOptions(
        models_dir=models_dir,
        database_url=database_url,
        model=model,
        extra=tuple(extra or ()),
        data_dir=data_dir or paths().data,
        lfw=lfw,
        work_dir=work_dir,
        loss=loss,
        epochs=epochs,
        lr=lr,
        held_out=0.2 if held_out is None else held_out,
        tolerance=tolerance,
        seed=seed,
        overrides=tuple(set_ or ()),
        version=version,
        dlib_dat=dlib_dat,
        device=device,
        min_people=min_people,
        method=method,
        adapter=_adapter_options(
            adapter_loss, adapter_epochs, 0.5 if held_out is None else held_out, seed, sources
        ),
        selftrain_dir=selftrain_dir,
        selftrain_retention_days=selftrain_retention_days,
    )

    def once() -> int:
        result = run(opts)
        typer.echo(json.dumps({"status": result.status, "version": result.version, "reasons": result.reasons,
                               "report": str(result.report) if result.report else None}, indent=2))  # fmt: skip
        return result.exit_code

    from training.retrain.trigger import Trigger, enrolled_since, loop

    trigger = Trigger(every_hours=every_hours, after_enrolments=after_enrolments)
    if not trigger.looping:
        raise typer.Exit(code=once())

    def published():
        from service.model_registry import startup_entry

        return startup_entry(models_dir, model).card.published_at

    loop(trigger, once, lambda since: enrolled_since(database_url, since), published, check_seconds)


def _adapter_options(loss: str, epochs: int, held_out: float, seed: int, sources: str):
    from training.retrain.adapter import AdapterOptions

    chosen = None if sources == "auto" else tuple(s.strip() for s in sources.split(",") if s.strip())
    try:
        return AdapterOptions(loss=loss, epochs=epochs, held_out=held_out, seed=seed, sources=chosen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


# Evaluation and calibration: thin wrappers over training.evaluation.


@app.command("eval")
def eval_cmd(
    model_dir: Annotated[Path, typer.Argument(help="folder with model.onnx + model.json")],
    data_dir: DataDir = None,
    folder: Annotated[
        Path | None, typer.Option(help="evaluate on pairs sampled from this folder instead")
    ] = None,
    models_dir: ModelsDir = REPO_ROOT / "models",
    cache_dir: CacheDir = None,
    plots_dir: Annotated[Path | None, typer.Option(help="write ROC/DET and histogram PNGs here")] = None,
    seed: Annotated[int, typer.Option(help="seed of the pairs sampled from --folder")] = 0,
    out: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
    update_card: Annotated[bool, typer.Option(help="store the LFW report as the card's evaluation")] = False,
) -> None:
    """LFW View 2 10-fold protocol (or sampled pairs of a folder) through the service pipeline."""
    _logging(False)
    from training.evaluation.evaluate import evaluate_folder, evaluate_lfw
    from training.evaluation.evaluate import update_card as write_evaluation

    report: dict[str, Any]
    if folder is None:
        report = evaluate_lfw(
            model_dir, data_dir or paths().data, models_dir, cache_dir or paths().cache, plots_dir=plots_dir
        )
    else:
        report = evaluate_folder(
            model_dir, folder, models_dir, cache_dir or paths().cache, seed=seed, plots_dir=plots_dir
        )
    text = json.dumps(report, indent=2, default=str)
    if out is not None:
        out.write_text(text + "\n")
    if update_card:
        if folder is not None:
            raise typer.BadParameter("--update-card stores the LFW protocol only", param_hint="--folder")
        report.pop("plots", None)
        write_evaluation(model_dir, evaluation=report)
    typer.echo(text)


@app.command()
def calibrate(
    model_dir: Annotated[Path, typer.Argument(help="folder with model.onnx + model.json")],
    data_dir: DataDir = None,
    models_dir: ModelsDir = REPO_ROOT / "models",
    cache_dir: CacheDir = None,
    source: Annotated[
        list[str] | None, typer.Option(help="impostor source: lfw-outside-view2, celeba (repeatable)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the calibration as JSON here")] = None,
    update_card: Annotated[bool, typer.Option(help="store it as the card's calibration")] = False,
    exclude_identities: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="text file, one identity (folder name) per line, left out of the impostor sources: "
            "the people a model was trained or adapted on",
        ),
    ] = None,
) -> None:
    """Fit a, b (LFW View 1) and the false-accept table (impostor pairs outside LFW View 2)."""
    _logging(False)
    from training.evaluation.calibration import calibrate_model
    from training.evaluation.evaluate import update_card as write_calibration

    sources = tuple(source) if source else ("lfw-outside-view2", "celeba")
    try:
        excluded = set(exclude_identities.read_text().split()) if exclude_identities else set()
        calibration = calibrate_model(
            model_dir,
            data_dir or paths().data,
            models_dir,
            cache_dir or paths().cache,
            sources,
            exclude_identities=excluded,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    text = calibration.model_dump_json(indent=2)
    if out is not None:
        out.write_text(text + "\n")
    if update_card:
        write_calibration(model_dir, calibration=calibration.model_dump())
    typer.echo(text)


app.add_typer(assets_app)


def main() -> None:
    """The ``facegate-train`` entry point: a missing data folder is one line, not a traceback."""
    try:
        app()
    except DataMissing as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
