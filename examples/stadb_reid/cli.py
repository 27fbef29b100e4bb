"""The ``stadb-reid`` command: train, evaluate, the offline demo, export, feature extraction and figures."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import Config, ConfigError, config_files_set, load_config
from .errors import ReIDError

try:  # recent typer releases vendor click; main() needs its exception classes to print them in one line
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - typer with click as a dependency
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    help="Train and evaluate the STADB person re-identification network.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigFiles = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        help="YAML file or bundled config name (market1501, demo_cpu, ablation_global...); repeatable.",
    ),
]
SetOverrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config key, e.g. --set optim.base_lr=3e-4; repeatable."),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace the files an earlier run or command wrote there.")
]


def build_config(
    files: list[str] | None,
    overrides: dict[str, Any],
    settings: list[str] | None,
    *,
    needs_dataset: bool = False,
) -> Config:
    """Load the config from files, flags and ``--set KEY=VALUE`` pairs, and check every value.

    A ``--dataset`` other than the one the files name drops the files' ``data.options`` (they belong
    to that other dataset). With ``needs_dataset``, a dataset must be named by ``--dataset``, a config
    file or ``--set data.dataset=...``, so a mistyped ``--data-root`` is never taken for the default
    synthetic dataset and generated. Config errors are usage errors.
    """
    from .engine import validate_config

    keys = []
    for pair in settings or []:
        key, separator, _ = pair.partition("=")
        if not separator or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        keys.append(key.strip())
    try:
        dataset = overrides.get("data.dataset")
        if dataset is not None and dataset.lower() != load_config(files).data.dataset.lower():
            overrides = {**overrides, "data.options": {}}
        named = dataset is not None or "data.dataset" in keys or config_files_set(files, "data.dataset")
        if needs_dataset and not named:
            raise ConfigError(
                "no dataset named: pass --dataset NAME --data-root DIR (--dataset synthetic generates "
                "the built-in one there) or a --config that names one, e.g. --config market1501"
            )
        return validate_config(load_config(files, overrides, settings))
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--config/--set") from error


def refuse_to_replace(paths: list[Path], overwrite: bool) -> None:
    """Raise a usage error naming the first of ``paths`` that exists, unless ``overwrite``."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        raise typer.BadParameter(f"{existing[0]} exists; pass --overwrite to replace it", param_hint="--out")


@app.command()
def train(
    dataset: Annotated[
        str | None, typer.Option(help="market1501, dukemtmc, cuhk03, msmt17, viper, folder, synthetic")
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Dataset folder.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Checkpoint and metrics folder.")] = None,
    config: ConfigFiles = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    height: Annotated[int | None, typer.Option(min=16)] = None,
    width: Annotated[int | None, typer.Option(min=16)] = None,
    num_identities: Annotated[int | None, typer.Option(min=2, help="P identities per batch.")] = None,
    num_instances: Annotated[int | None, typer.Option(min=1, help="K images per identity.")] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option(
            "--pretrained/--no-pretrained", help="ImageNet weights through timm (needs the internet)."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Local backbone weights (.pth/.safetensors).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    variant: Annotated[
        str | None, typer.Option(help="stadb, global, global_drop, global_attention, bdb.")
    ] = None,
    attention: Annotated[str | None, typer.Option(help="cbam, se, srm, triplet.")] = None,
    alpha: Annotated[float | None, typer.Option(help="SelfThresholdDrop threshold.")] = None,
    rho: Annotated[float | None, typer.Option(help="Probability of the drop branch.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    amp: Annotated[
        str | None, typer.Option(help="Mixed precision: off, bf16 (CPU/CUDA), fp16 (CUDA).")
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option("--channels-last/--no-channels-last", help="NHWC memory format.")
    ] = None,
    compile_: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="Wrap the model in torch.compile.")
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option("--deterministic/--no-deterministic", help="Deterministic kernels (exact resume)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest good checkpoint in --output-dir.")
    ] = False,
    overwrite: Overwrite = False,
    set_: SetOverrides = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train a model and write OUTPUT/checkpoint.pt (every epoch) and OUTPUT/metrics.json.

    An OUTPUT that holds an earlier run needs --resume (continue it) or --overwrite (replace it).

    Multi-GPU: torchrun --nproc_per_node=N -m stadb_reid train ... (gloo on CPU, NCCL on CUDA).
    Ctrl-C or SIGTERM saves a checkpoint after the current step; --resume continues from it.
    """
    from .engine import train as run_training

    overrides = {
        "data.dataset": dataset,
        "data.root": str(data_root) if data_root else None,
        "output_dir": str(output_dir) if output_dir else None,
        "optim.epochs": epochs,
        "data.height": height,
        "data.width": width,
        "data.num_identities": num_identities,
        "data.num_instances": num_instances,
        "model.pretrained": pretrained,
        "model.weights": str(weights) if weights else None,
        "device": device,
        "model.variant": variant,
        "model.attention": attention,
        "model.alpha": alpha,
        "model.rho": rho,
        "seed": seed,
        "amp": amp,
        "channels_last": channels_last,
        "compile": compile_,
        "deterministic": deterministic,
    }
    run_training(
        build_config(config, overrides, set_, needs_dataset=True),
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )


@app.command()
def evaluate(
    checkpoint: Annotated[
        Path | None, typer.Option(help="A checkpoint.pt written by train (or use --untrained).")
    ] = None,
    untrained: Annotated[
        bool,
        typer.Option("--untrained", help="Evaluate the untrained network of --config instead (a baseline)."),
    ] = False,
    config: ConfigFiles = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name; defaults to the checkpoint's.")] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Dataset folder; defaults to the checkpoint's.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    flip: Annotated[
        bool | None, typer.Option("--flip/--no-flip", help="Average with flipped images.")
    ] = None,
    rerank: Annotated[
        bool | None, typer.Option("--rerank/--no-rerank", help="k-reciprocal re-ranking.")
    ] = None,
    set_: SetOverrides = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Evaluate a checkpoint (or an untrained network) and print rank-1/5/10, mAP and mINP."""
    from .engine import evaluate_checkpoint, evaluate_untrained

    overrides = {
        "data.dataset": dataset,
        "data.root": str(data_root) if data_root else None,
        "device": device,
        "eval.flip": flip,
        "eval.rerank": rerank,
    }
    if (checkpoint is None) == (not untrained):
        raise typer.BadParameter("give either --checkpoint FILE or --untrained", param_hint="--checkpoint")
    if checkpoint is not None:
        if config or set_:
            raise typer.BadParameter("a checkpoint carries its config", param_hint="--config/--set")
        metrics = evaluate_checkpoint(checkpoint, overrides, progress=progress)
    else:
        metrics = evaluate_untrained(
            build_config(config, overrides, set_, needs_dataset=True), progress=progress
        )
    typer.echo(json.dumps({k: round(v, 2) for k, v in metrics.items()}))


@app.command()
def demo(
    output_dir: Annotated[
        Path, typer.Option(help="Where the synthetic data, checkpoint and metrics go.")
    ] = Path("outputs/demo"),
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    overwrite: Overwrite = False,
    set_: SetOverrides = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Offline demo: the full model at reduced resolution on the built-in synthetic dataset, on CPU.

    Running it again into the same folder needs --overwrite (or another --output-dir).
    """
    from .engine import run_demo

    overrides = {"output_dir": str(output_dir), "optim.epochs": epochs}
    run_demo(build_config(["demo_cpu"], overrides, set_), overwrite=overwrite, progress=progress)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint.pt written by train.")],
    format_: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="Output file; default: the checkpoint with the format's suffix.")
    ] = None,
    height: Annotated[
        int | None, typer.Option(min=16, help="Input height; defaults to the checkpoint's.")
    ] = None,
    width: Annotated[
        int | None, typer.Option(min=16, help="Input width; defaults to the checkpoint's.")
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Write the eval-mode embedding model as ONNX (dynamic batch) or TorchScript, with its preprocessing."""
    from .engine.export import ExportFormat, export_checkpoint

    try:
        export_format = ExportFormat(format_)
    except ValueError:
        choices = " or ".join(f.value for f in ExportFormat)
        raise typer.BadParameter(f"expected {choices}, got {format_!r}", param_hint="--format") from None
    if out is not None and out.resolve() == checkpoint.resolve():
        raise typer.BadParameter("would overwrite the checkpoint", param_hint="--out")
    refuse_to_replace([out if out is not None else checkpoint.with_suffix(export_format.suffix)], overwrite)
    written = export_checkpoint(checkpoint, export_format, out, height=height, width=width)
    typer.echo(f"wrote {written}")


@app.command()
def extract(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint.pt written by train.")],
    images: Annotated[Path, typer.Option(help="Folder of images, searched recursively.")],
    out: Annotated[Path, typer.Option(help="FEATS.npy to write; the image paths go to FEATS.txt.")],
    device: Annotated[str | None, typer.Option(help="cpu or cuda; defaults to the checkpoint's.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Defaults to data.test_batch_size.")] = None,
    num_workers: Annotated[int | None, typer.Option(min=0, help="Defaults to data.num_workers.")] = None,
    flip: Annotated[
        bool | None, typer.Option("--flip/--no-flip", help="Average with flipped images.")
    ] = None,
    overwrite: Overwrite = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Embed every image under IMAGES into an N x D float32 array, rows in the order of FEATS.txt."""
    from .engine import extract_folder

    if out.suffix != ".npy":
        raise typer.BadParameter(f"must end with .npy, got {out}", param_hint="--out")
    refuse_to_replace([out, out.with_suffix(".txt")], overwrite)
    embeddings = extract_folder(
        checkpoint,
        images,
        out,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        flip=flip,
        progress=progress,
    )
    rows, dims = embeddings.shape
    typer.echo(f"wrote {rows} x {dims} embeddings to {out} and their paths to {out.with_suffix('.txt')}")


@app.command()
def visualize(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint.pt written by train.")],
    output_dir: Annotated[
        Path | None, typer.Option(help="Folder of the PNG files; default: CHECKPOINT_FOLDER/figures.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name; defaults to the checkpoint's.")] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Dataset folder; defaults to the checkpoint's.")
    ] = None,
    num_queries: Annotated[
        int, typer.Option(min=1, help="Queries in the attention and retrieval figures.")
    ] = 6,
    device: Annotated[str | None, typer.Option(help="cpu or cuda; defaults to the checkpoint's.")] = None,
    overwrite: Overwrite = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Draw curves.png, cmc.png, attention.png (paper Figure 3) and retrieval.png (Figure 4)."""
    from .visualization import figure_paths, visualize_checkpoint

    figures = output_dir if output_dir is not None else checkpoint.parent / "figures"
    refuse_to_replace(list(figure_paths(figures)), overwrite)
    paths = visualize_checkpoint(
        checkpoint,
        figures,
        dataset=dataset,
        data_root=data_root,
        num_queries=num_queries,
        device=device,
        progress=progress,
    )
    for path in paths:
        typer.echo(f"wrote {path}")


def main() -> None:
    """Entry point of the ``stadb-reid`` console script: every failure is one line on stderr.

    Exit codes: 2 for usage, config, data and checkpoint errors; 1 when training diverged; 130 when
    interrupted (after saving a checkpoint). See :mod:`stadb_reid.errors`.
    """
    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as usage:
        if isinstance(usage, getattr(click_exceptions, "NoArgsIsHelpError", ())) and usage.ctx is not None:
            typer.echo(usage.ctx.get_help())
            raise SystemExit(0) from None
        where = f" (see {usage.ctx.command_path} --help)" if usage.ctx is not None else ""
        typer.echo(f"error: {usage.format_message()}{where}", err=True)
        raise SystemExit(2) from None
    except ReIDError as error:
        typer.echo(f"{error.label}: {error}", err=True)
        raise SystemExit(error.exit_code) from None
    except typer.Abort:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)
