"""The gallery search commands: ``index`` embeds a gallery once, ``search`` finds query images in it."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ..printable import printable
from .app import PRECISION_HELP, Overwrite, app, refuse_to_replace

if TYPE_CHECKING:
    from ..search.ann import AnnKind
    from ..search.exact import SearchMetric
    from ..search.shards import SearchBackend

__all__ = ["index", "search"]

_METRICS = ("euclidean", "cosine")
_BACKENDS = ("exact", "faiss", "ann")
_ANN_KINDS = ("ivf-pq", "hnsw", "flat")


@app.command()
def index(
    model: Annotated[Path, typer.Option(help="Model folder: config.yaml, model.safetensors, README.md.")],
    images: Annotated[Path, typer.Option(help="Folder of gallery images, searched recursively.")],
    out: Annotated[Path, typer.Option(help="Index folder: created, or an index to finish and extend.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    num_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Processes that decode and resize images (0: in this process); "
            "default: the CPUs the network leaves free, at most 8.",
        ),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Images per chunk file: the work a killed run can lose.")
    ] = 1024,
    flip: Annotated[
        bool | None,
        typer.Option("--flip/--no-flip", help="Average with flipped images; default: the index's, or no."),
    ] = None,
    ann: Annotated[
        str | None,
        typer.Option(
            help="Persisted ANN index: ivf-pq, hnsw or flat (faiss); default: update the index's own, if any."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete the index at --out and build it afresh.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Embed every image under IMAGES into the gallery index OUT; only images it lacks are embedded.

    A killed run resumes at the next missing chunk when run again; run it again later to add new images.
    """
    from ..commands import index_gallery
    from ..inference.memory import keep_freed_memory

    if ann is not None and ann not in _ANN_KINDS:
        raise typer.BadParameter(f"expected ivf-pq, hnsw or flat, got {ann!r}", param_hint="--ann")
    keep_freed_memory()
    summary, ann_summary = index_gallery(
        model,
        images,
        out,
        device=device,
        batch_size=batch_size,
        flip=flip,
        chunk_size=chunk_size,
        ann=cast("AnnKind | None", ann),
        precision=precision,
        num_workers=num_workers,
        on_extractor=lambda extractor: typer.echo(extractor.precision_description),
        overwrite=overwrite,
        progress=progress,
    )
    typer.echo(
        f"{printable(str(out))}: {summary.total} images in {summary.chunks} chunks "
        f"({summary.added} new, {summary.embedded} embedded now)"
    )
    if ann_summary is not None:
        plan = ann_summary.plan
        done = "trained and built" if ann_summary.trained else f"{ann_summary.added} rows added"
        per_image = ann_summary.bytes / max(ann_summary.rows, 1)
        typer.echo(
            f"ANN index {plan.kind} ({plan.factory}{f', nprobe {plan.nprobe}' if plan.nprobe else ''}): "
            f"{ann_summary.rows} rows, {done}, {per_image:,.0f} bytes an image"
        )
        if plan.note:
            typer.echo(f"note: {plan.note}")


@app.command()
def search(
    index: Annotated[
        list[Path],
        typer.Option(
            help="Gallery index folder written by stadb-reid index; repeat to search several as one."
        ),
    ],
    query: Annotated[Path, typer.Option(help="Query image, or a folder of them (searched recursively).")],
    top_k: Annotated[int, typer.Option(min=1, help="Matches per query.")] = 10,
    rerank: Annotated[
        bool, typer.Option("--rerank/--no-rerank", help="k-reciprocal re-ranking of the nearest 100.")
    ] = False,
    metric: Annotated[str, typer.Option(help="euclidean or cosine.")] = "euclidean",
    backend: Annotated[
        str | None,
        typer.Option(
            help="exact (torch), faiss (flat, built per call) or ann (the persisted ANN index); "
            "default: ann where every index has one, else exact."
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model folder; default: the one the index was built with.")
    ] = None,
    out_json: Annotated[Path | None, typer.Option(help="JSON report; default: INDEX-search.json.")] = None,
    out_html: Annotated[Path | None, typer.Option(help="HTML page; default: INDEX-search.html.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="Query images per forward pass.")] = 64,
    overwrite: Overwrite = False,
) -> None:
    """Print the TOP_K nearest gallery images of each query; write them as JSON and as an HTML page."""
    from ..commands import search_gallery
    from ..commands.search import check_search_outputs, default_search_outputs
    from ..inference.memory import keep_freed_memory
    from ..search import format_results

    if metric not in _METRICS:
        raise typer.BadParameter(f"expected euclidean or cosine, got {metric!r}", param_hint="--metric")
    if backend is not None and backend not in _BACKENDS:
        raise typer.BadParameter(f"expected exact, faiss or ann, got {backend!r}", param_hint="--backend")
    default_json, default_html = default_search_outputs(index[0])
    json_path, html_path = out_json or default_json, out_html or default_html
    check_search_outputs(index, json_path, html_path)  # before --overwrite can make a clash destructive
    refuse_to_replace([json_path], overwrite, "--out-json")
    refuse_to_replace([html_path], overwrite, "--out-html")
    keep_freed_memory()
    results = search_gallery(
        index,
        query,
        out_json=json_path,
        out_html=html_path,
        model_dir=model,
        top_k=top_k,
        metric=cast("SearchMetric", metric),
        backend=cast("SearchBackend | None", backend),
        rerank=rerank,
        device=device,
        batch_size=batch_size,
    )
    typer.echo(format_results(results))
    typer.echo(f"wrote {printable(str(json_path))} and {printable(str(html_path))}")
