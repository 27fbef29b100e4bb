"""The ``stadb-reid`` typer app, the options its commands share, and how a command line becomes a config."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import Config, Overrides, available_recipes, load_config
from ..config.files import DEFAULT_RECIPE, config_files_set
from ..errors import ConfigError

__all__ = [
    "PRECISION_HELP",
    "ConfigFiles",
    "Overwrite",
    "RecipeName",
    "SetOverrides",
    "app",
    "build_config",
    "refuse_to_replace",
]

app = typer.Typer(
    help="Train and evaluate the STADB person re-identification network.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Boxed help fits its panels to the terminal and cuts what does not fit with an ellipsis; piped
    # into a file or a pager there is no terminal to fit, so the help is plain text, all of it.
    rich_markup_mode="rich" if sys.stdout.isatty() else None,
)
"""The ``stadb-reid`` command: each module of :mod:`stadb_reid.cli` registers its commands on it."""

ConfigFiles = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        help="YAML file or bundled config name (market1501, demo_cpu, ablation_global...); repeatable.",
    ),
]
RecipeName = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help=f"Settings every run starts from: paper (the paper's text, the authors' code where it is "
        f"silent) or reference (the authors' code). Default: {DEFAULT_RECIPE}.",
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
    flags: Overrides,
    settings: list[str] | None,
    *,
    needs_dataset: bool = False,
    recipe: str | None = None,
) -> Config:
    """Load the config from a recipe, files, flags and ``--set KEY=VALUE`` pairs, and check every value.

    The recipe (``recipe``, else :data:`~stadb_reid.config.files.DEFAULT_RECIPE`) goes under the files;
    ``flags`` (``Overrides.from_flags(...)`` of the command's convenience flags), then ``settings``
    (``--set``) go over them. A dataset other than the one the files name drops the files'
    ``data.options`` (they belong to that other dataset). With ``needs_dataset``, a dataset must be
    named by ``--dataset``, a config file or ``--set data.dataset=...``, so a mistyped ``--data-root``
    is never taken for the default synthetic dataset and generated. Config errors are usage errors.
    """
    from ..engine.preflight import validate_config

    try:
        overrides = flags | Overrides.parse(settings or [])
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--set") from error
    recipe = DEFAULT_RECIPE if recipe is None else recipe
    if recipe not in available_recipes():
        raise typer.BadParameter(
            f"expected {' or '.join(available_recipes())}, got {recipe!r}", param_hint="--recipe"
        )
    try:
        config = validate_config(load_config(files, overrides, recipe=recipe))
        named = overrides.dataset is not None or config_files_set(files, "data.dataset")
        if needs_dataset and not named:
            raise ConfigError(
                "no dataset named: pass --dataset NAME --data-root DIR (--dataset synthetic generates "
                "the built-in one there) or a --config that names one, e.g. --config market1501"
            )
        return config
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--config/--set") from error


def refuse_to_replace(paths: list[Path], overwrite: bool, option: str = "--out") -> None:
    """Raise a usage error on ``option`` naming the first of ``paths`` that exists, unless ``overwrite``."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        raise typer.BadParameter(f"{existing[0]} exists; pass --overwrite to replace it", param_hint=option)


#: Help of ``--precision`` (extract, index).
PRECISION_HELP = (
    "auto (the fastest path with parity on this machine, named in the output), fp32, bf16, "
    "or onnx (ONNX Runtime, CPU)."
)
