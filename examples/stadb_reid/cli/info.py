"""The ``info`` command: the config a command line resolves to, and the size of its network."""

from typing import Annotated

import typer

from ..config import Overrides
from ..config.files import DEFAULT_RECIPE
from .app import ConfigFiles, RecipeName, SetOverrides, app, build_config

__all__ = ["info"]


@app.command()
def info(
    config: ConfigFiles = None,
    recipe: RecipeName = None,
    num_classes: Annotated[
        int | None,
        typer.Option(min=1, help="Classes of the classifiers; default: the dataset's training identities."),
    ] = None,
    set_: SetOverrides = None,
) -> None:
    """Print the resolved config as YAML, the learning rate per epoch and the parameter count; reads no data.

    The output loads back as a config file (--config FILE); the recipe, the count and the schedule
    are comments.
    """
    from ..commands import describe_config

    resolved = build_config(config, Overrides(), set_, recipe=recipe)
    typer.echo(f"# recipe: {recipe or DEFAULT_RECIPE}")
    typer.echo(describe_config(resolved, num_classes), nl=False)
