"""The commands that train: ``train`` and the offline ``demo``."""

from pathlib import Path
from typing import Annotated

import typer

from ..config import Overrides, Variant
from ..config.files import DEFAULT_RECIPE
from ..config.schema import AmpMode, AttentionType
from .app import ConfigFiles, Overwrite, RecipeName, SetOverrides, app, build_config

__all__ = ["demo", "train"]


@app.command()
def train(
    dataset: Annotated[
        str | None, typer.Option(help="A registered dataset (stadb_reid.data.available_datasets()).")
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Dataset folder.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Checkpoint and metrics folder.")] = None,
    config: ConfigFiles = None,
    recipe: RecipeName = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    height: Annotated[int | None, typer.Option()] = None,
    width: Annotated[int | None, typer.Option()] = None,
    num_identities: Annotated[int | None, typer.Option(help="P identities per batch.")] = None,
    num_instances: Annotated[int | None, typer.Option(help="K images per identity.")] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option(
            "--pretrained/--no-pretrained", help="ImageNet weights through timm (needs the internet)."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Local backbone weights (.pth/.safetensors).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    variant: Annotated[str | None, typer.Option(help=", ".join(Variant) + ".")] = None,
    attention: Annotated[str | None, typer.Option(help=", ".join(AttentionType) + ".")] = None,
    alpha: Annotated[float | None, typer.Option(help="SelfThresholdDrop threshold.")] = None,
    rho: Annotated[float | None, typer.Option(help="Probability of the drop branch.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    amp: Annotated[
        str | None, typer.Option(help=f"Mixed precision: {', '.join(AmpMode)} (fp16 on CUDA only).")
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
    eval_every: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Evaluate on the test set every N epochs (0: at the end only) and also report the "
            "best-on-test epoch by rank-1 (test-set model selection, not a held-out estimate).",
        ),
    ] = None,
    ap_at: Annotated[
        int | None,
        typer.Option(min=0, help="Also report mAP cut at rank N, as the STADB code (0: full mAP only)."),
    ] = None,
    flip: Annotated[
        bool | None, typer.Option("--flip/--no-flip", help="Average with flipped images.")
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

    Augmentation, set with --set KEY=VALUE: data.padding (pad and random crop), data.erasing_prob
    (random erasing), data.cutout_prob and data.cutout_size (Cutout: one square of the mean colour;
    cutout_size null, the recipes' setting, is 1/6 of data.height: 64 pixels at 384 x 128).
    stadb-reid info prints every setting a command line resolves to and the learning rate per epoch.
    """
    from ..engine import train as run_training

    flags = Overrides.from_flags(
        dataset=dataset,
        data_root=data_root,
        output_dir=output_dir,
        epochs=epochs,
        height=height,
        width=width,
        num_identities=num_identities,
        num_instances=num_instances,
        pretrained=pretrained,
        weights=weights,
        device=device,
        variant=variant,
        attention=attention,
        alpha=alpha,
        rho=rho,
        seed=seed,
        amp=amp,
        channels_last=channels_last,
        compile=compile_,
        deterministic=deterministic,
        eval_every=eval_every,
        ap_at=ap_at,
        flip=flip,
    )
    run_training(
        build_config(config, flags, set_, needs_dataset=True, recipe=recipe),
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        extra_metrics={"recipe": recipe or DEFAULT_RECIPE},  # for the model card
    )


@app.command()
def demo(
    output_dir: Annotated[
        Path, typer.Option(help="Where the synthetic data, checkpoint and metrics go.")
    ] = Path("outputs/demo"),
    epochs: Annotated[int | None, typer.Option()] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted demo from its newest checkpoint.")
    ] = False,
    overwrite: Overwrite = False,
    set_: SetOverrides = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Offline demo: the full model at reduced resolution on the built-in synthetic dataset, on CPU.

    Running it again into the same folder needs --resume (continue it) or --overwrite (start
    afresh), or another --output-dir. It ends with the elapsed time and the training steps/s.
    """
    from ..commands import run_demo

    flags = Overrides.from_flags(output_dir=output_dir, epochs=epochs)
    run_demo(build_config(["demo_cpu"], flags, set_), resume=resume, overwrite=overwrite, progress=progress)
