"""The ``stadb-reid`` console script: names the missing extra instead of an import traceback.

``pip install stadb-layers`` installs the command together with the library, but the trainer's
dependencies come with the ``reid`` extra only.
"""

import sys

__all__ = ["REID_EXTRA_MODULES", "main"]

#: Top-level modules of the ``reid`` extra's packages.
REID_EXTRA_MODULES = frozenset({"typer", "omegaconf", "timm", "tqdm", "PIL", "numpy", "matplotlib"})


def main() -> None:
    """Run the command line, or exit with one line naming the extra to install."""
    try:
        from .cli import main as run

        run()
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in REID_EXTRA_MODULES:
            raise
        print(
            f"error: stadb-reid needs the trainer's extra ({missing} is not installed): "
            "pip install 'stadb-layers[reid]'",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
