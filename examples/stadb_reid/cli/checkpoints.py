"""The commands that use a trained checkpoint: ``evaluate``, ``export``, ``extract`` and ``visualize``."""

import json
from pathlib import Path
from typing import Annotated

import typer

from ..config import Overrides
from ..config.limits import CONFIG_LIMITS
from .app import (
    PRECISION_HELP,
    ConfigFiles,
    Overwrite,
    RecipeName,
    SetOverrides,
    app,
    build_config,
    refuse_to_replace,
)

__all__ = ["evaluate", "export", "extract", "visualize"]


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
    recipe: RecipeName = None,
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
    ap_at: Annotated[
        int | None,
        typer.Option(min=0, help="Also report mAP cut at rank N, as the STADB code (0: full mAP only)."),
    ] = None,
    set_: SetOverrides = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Evaluate a checkpoint (or an untrained network) and print rank-1/5/10, mAP and mINP."""
    from ..commands import evaluate_checkpoint
    from ..commands.evaluate import evaluate_untrained
    from ..inference.memory import keep_freed_memory

    flags = Overrides.from_flags(
        dataset=dataset, data_root=data_root, device=device, flip=flip, rerank=rerank, ap_at=ap_at
    )
    if (checkpoint is None) == (not untrained):
        raise typer.BadParameter("give either --checkpoint FILE or --untrained", param_hint="--checkpoint")
    keep_freed_memory()
    if checkpoint is not None:
        if config or set_ or recipe:
            raise typer.BadParameter("a checkpoint carries its config", param_hint="--config/--recipe/--set")
        metrics = evaluate_checkpoint(checkpoint, flags, progress=progress)
    else:
        metrics = evaluate_untrained(
            build_config(config, flags, set_, needs_dataset=True, recipe=recipe), progress=progress
        )
    typer.echo(json.dumps({k: round(v, 2) for k, v in metrics.items()}))


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint.pt written by train.")],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx, torchscript, safetensors (the weights alone) or folder (config.yaml, "
            "model.safetensors and a model card: the folder to share).",
        ),
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(help="Output file or folder; default: beside the checkpoint (folder: model/)."),
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(
            min=16, max=CONFIG_LIMITS["data.height"], help="Input height; defaults to the checkpoint's."
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            min=16, max=CONFIG_LIMITS["data.width"], help="Input width; defaults to the checkpoint's."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Compare the export's embeddings with PyTorch's at batch 1 and 8 (and rank-1/mAP on a "
            "subset with --dataset/--data-root); exit status 1 on a mismatch.",
        ),
    ] = False,
    dataset: Annotated[
        str | None,
        typer.Option(help="With --verify: dataset of the ranking check; defaults to the checkpoint's."),
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="With --verify: dataset folder of the ranking check.")
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Write the eval-mode model as ONNX, TorchScript, safetensors weights or a model folder to share."""
    from ..commands import ExportFormat, export_checkpoint
    from ..commands.verify import verify_export
    from ..model.folder.names import FOLDER_FILES

    try:
        export_format = ExportFormat(format_)
    except ValueError:
        choices = " or ".join(f.value for f in ExportFormat)
        raise typer.BadParameter(f"expected {choices}, got {format_!r}", param_hint="--format") from None
    if out is not None and out.resolve() == checkpoint.resolve():
        raise typer.BadParameter("would overwrite the checkpoint", param_hint="--out")
    if (dataset or data_root) and not verify:
        raise typer.BadParameter("is for the ranking check of --verify", param_hint="--dataset/--data-root")
    target = out if out is not None else export_format.default_path(checkpoint)
    # A folder is replaced file by file: only the files this command writes there count.
    written_paths = (
        [target / name for name in FOLDER_FILES] if export_format is ExportFormat.FOLDER else [target]
    )
    refuse_to_replace(written_paths, overwrite)
    written = export_checkpoint(checkpoint, export_format, out, height=height, width=width)
    typer.echo(f"wrote {written}")
    if verify:
        ranking = Overrides.from_flags(dataset=dataset, data_root=data_root)
        report = verify_export(checkpoint, written, export_format, ranking=ranking or None)
        for line in report.lines():
            typer.echo(line)


@app.command()
def extract(
    images: Annotated[Path, typer.Option(help="Folder of images, searched recursively.")],
    out: Annotated[Path, typer.Option(help="FEATS.npy to write; the image paths go to FEATS.txt.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="A checkpoint.pt written by train (or give --model).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="A model folder (export --format folder, or a run's model/) instead of --checkpoint."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda; defaults to the checkpoint's (a folder: cpu).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=CONFIG_LIMITS["data.test_batch_size"], help="Defaults to data.test_batch_size."
        ),
    ] = None,
    num_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=CONFIG_LIMITS["data.num_workers"],
            help="Processes that decode and resize images (0: in this process); "
            "default: the CPUs the network leaves free, at most 8.",
        ),
    ] = None,
    flip: Annotated[
        bool | None, typer.Option("--flip/--no-flip", help="Average with flipped images.")
    ] = None,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    overwrite: Overwrite = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Embed every image under IMAGES into an N x D float32 array, rows in the order of FEATS.txt."""
    from ..commands import extract_folder
    from ..inference.memory import keep_freed_memory
    from ..model.folder.files import resolve_model_folder

    if (checkpoint is None) == (model is None):
        raise typer.BadParameter("give either --checkpoint FILE or --model DIR", param_hint="--checkpoint")
    if out.suffix != ".npy":
        raise typer.BadParameter(f"must end with .npy, got {out}", param_hint="--out")
    refuse_to_replace([out, out.with_suffix(".txt")], overwrite)
    # A --model that is missing or a file fails here, named as the model folder it should be.
    source = resolve_model_folder(model) if model is not None else checkpoint
    assert source is not None  # exactly one of the two was given
    keep_freed_memory()
    embeddings = extract_folder(
        source,
        images,
        out,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        flip=flip,
        precision=precision,
        on_extractor=lambda extractor: typer.echo(extractor.precision_description),
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
    from ..commands import visualize_checkpoint
    from ..commands.visualize import figure_paths
    from ..engine.run_folder import FIGURES_DIR

    figures = output_dir if output_dir is not None else checkpoint.parent / FIGURES_DIR
    refuse_to_replace(list(figure_paths(figures)), overwrite, "--output-dir")
    paths = visualize_checkpoint(
        checkpoint,
        figures,
        overrides=Overrides.from_flags(dataset=dataset, data_root=data_root, device=device),
        num_queries=num_queries,
        progress=progress,
    )
    for path in paths:
        typer.echo(f"wrote {path}")
