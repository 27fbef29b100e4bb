"""The ``sweep`` command: a grid of configs x seeds, run here or on a cluster, its status, one report."""

from pathlib import Path
from typing import Annotated

import typer

from ..config.limits import MAX_JOBS, MAX_THREADS
from .app import SetOverrides, app

__all__ = ["sweep"]

_CLUSTER = "Cluster (--launcher submitit)"


@app.command()
def sweep(
    grid: Annotated[
        str, typer.Argument(help="Grid YAML file, or a bundled grid name (table6_cuhk03_pair1).")
    ],
    output_dir: Annotated[Path, typer.Option(help="One folder per run below it, and the report.")],
    jobs: Annotated[
        int, typer.Option(min=1, max=MAX_JOBS, help="Runs at a time; the cores are split between them.")
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_THREADS, help="Torch threads per run (default: cores / jobs)."),
    ] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe of every run, overriding the grid's.")] = None,
    set_: SetOverrides = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Write the report of the finished runs, run nothing.")
    ] = False,
    status: Annotated[
        bool,
        typer.Option(
            "--status", help="List every run: done, running, queued, stopped or failed; run nothing."
        ),
    ] = False,
    launcher: Annotated[
        str, typer.Option(help="local: child processes here; submitit: one scheduler job per run.")
    ] = "local",
    cluster: Annotated[
        str | None,
        typer.Option(help="slurm or local (default: slurm when sbatch is found).", rich_help_panel=_CLUSTER),
    ] = None,
    partition: Annotated[str | None, typer.Option(help="SLURM partition.", rich_help_panel=_CLUSTER)] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account.", rich_help_panel=_CLUSTER)] = None,
    gpus_per_node: Annotated[
        int, typer.Option(min=0, help="GPUs per run (> 1: torchrun).", rich_help_panel=_CLUSTER)
    ] = 0,
    cpus_per_task: Annotated[
        int, typer.Option(min=1, help="CPU cores per run.", rich_help_panel=_CLUSTER)
    ] = 4,
    timeout_min: Annotated[
        int,
        typer.Option(min=1, help="Time limit per job; longer runs are requeued.", rich_help_panel=_CLUSTER),
    ] = 24 * 60,
    mem_gb: Annotated[float | None, typer.Option(help="Memory per job.", rich_help_panel=_CLUSTER)] = None,
    slurm: Annotated[
        list[str] | None,
        typer.Option(
            help="More #SBATCH settings as KEY=VALUE (qos=high); repeatable.", rich_help_panel=_CLUSTER
        ),
    ] = None,
) -> None:
    """Run every config x seed of GRID as an ordinary `train` and write OUTPUT/report.{json,md,png}.

    Resumable: a finished run (its record.json exists) is skipped, an interrupted one resumes from its
    checkpoint, so running the same command again continues the sweep. Per setting, the report gives
    the mean and standard deviation of rank-1/5/10, mAP and mINP over seeds, and for the grid's
    `compare` pairs the paired difference over seeds with a 95 % Student-t interval.

    --launcher submitit submits one job per run through submitit (SLURM, or its local executor) and
    waits for them; preempted or timed-out jobs are requeued and resume from their checkpoint.
    --set applies to every run (e.g. the cluster's data.root).
    """
    from ..commands.sweep import sweep as run
    from ..commands.sweep import sweep_status
    from ..commands.sweep.status import format_status

    settings = set_ or []
    if status:
        typer.echo(format_status(sweep_status(grid, output_dir, recipe=recipe, settings=settings)), nl=False)
        return
    scheduler = None
    if launcher == "submitit":
        scheduler = _scheduler(
            cluster, partition, account, gpus_per_node, cpus_per_task, timeout_min, mem_gb, slurm
        )
    run(
        grid,
        output_dir,
        jobs=jobs,
        threads=threads,
        recipe=recipe,
        report_only=report_only,
        log=typer.echo,
        settings=settings,
        launcher=launcher,
        scheduler=scheduler,
    )


def _scheduler(
    cluster: str | None,
    partition: str | None,
    account: str | None,
    gpus_per_node: int,
    cpus_per_task: int,
    timeout_min: int,
    mem_gb: float | None,
    slurm: list[str] | None,
) -> object:
    from ..errors import ConfigError

    try:
        from ..commands.sweep.submitit_launcher import SchedulerOptions
    except ImportError:
        raise ConfigError(
            "--launcher submitit needs the submitit package: pip install 'stadb-layers[cluster]'"
        ) from None
    if cluster not in (None, "slurm", "local"):
        raise ConfigError(f"--cluster must be slurm or local, got {cluster!r}")
    pairs = [item.partition("=") for item in slurm or []]
    if any(not key or not separator for key, separator, _ in pairs):
        raise ConfigError(f"--slurm takes KEY=VALUE, got {slurm!r}")
    return SchedulerOptions(
        cluster,
        partition,
        account,
        gpus_per_node,
        cpus_per_task,
        timeout_min,
        mem_gb,
        tuple((key, value) for key, _, value in pairs),
    )
