"""The commands that use a trained checkpoint: ``evaluate``, ``export``, ``extract`` and ``visualize``."""

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import ConfigFiles, Overwrite, SetOverrides, app, build_config, refuse_to_replace

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
    from ..commands import evaluate_checkpoint, evaluate_untrained

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
def export(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint.pt written by train.")],
    format_: Annotated[
        str, typer.Option("--format", help="onnx, torchscript, or safetensors (the weights alone, to share).")
    ] = "onnx",
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
    """Write the eval-mode model as ONNX (dynamic batch) or TorchScript, or its weights as safetensors."""
    from ..commands import ExportFormat, export_checkpoint

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
    from ..commands import extract_folder

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
    from ..commands import figure_paths, visualize_checkpoint

    figures = output_dir if output_dir is not None else checkpoint.parent / "figures"
    refuse_to_replace(list(figure_paths(figures)), overwrite, "--output-dir")
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
