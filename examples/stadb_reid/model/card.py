"""The ``README.md`` model card of a model folder: what the model is, how it was made, how to use it.

The card opens with the Hugging Face Hub's YAML front matter (``library_name``, ``tags``), so the
folder can be uploaded as a Hub repo as it is. :func:`run_provenance` collects what the card says
about the model's making: the dataset, the recipe, the run's figures, the command line and the commit.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    from .folder_config import ModelFolderConfig

__all__ = ["model_card", "run_provenance"]

_PACKAGE = Path(__file__).resolve().parents[1]


def _git(*arguments: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *arguments],
            cwd=_PACKAGE,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _git_commit() -> str | None:
    """The commit of the code's checkout (``-dirty`` when modified); ``None`` for an installed copy."""
    # An installed copy may lie inside someone else's repository, which does not track the package.
    if _git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    return _git("describe", "--always", "--dirty", "--abbrev=40")


def run_provenance(run_config: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How a model was made: ``dataset``, ``recipe``, ``metrics``, ``command`` and ``commit``.

    Args:
        run_config: The run's config as a plain dict; ``recipe`` is its ``recipe`` entry, if any.
        metrics: The run's results; their numbers (rank-1, mAP, epochs...) are kept.

    Returns:
        The provenance; ``command`` is this process's command line, ``commit`` the code's git commit
        (``None`` outside a git checkout).
    """
    numbers = {
        key: value
        for key, value in (metrics or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None
    return {
        "dataset": run_config["data"]["dataset"],
        "recipe": run_config.get("recipe"),
        "metrics": numbers,
        "command": command,
        "commit": _git_commit(),
    }


def _metrics_table(metrics: dict[str, object]) -> str:
    if not metrics:
        return "Not recorded (the model was exported from a checkpoint without its run's `metrics.json`).\n"
    rows = "".join(f"| `{name}` | {value} |\n" for name, value in metrics.items())
    header = "The run's figures: rank-1/5/10, mAP and mINP in percent, on the dataset's test split.\n\n"
    return header + "| metric | value |\n| --- | --- |\n" + rows


def model_card(config: ModelFolderConfig) -> str:
    r"""The Markdown model card of a folder described by ``config``.

    Examples:
        >>> from stadb_reid.model.folder_config import ModelFolderConfig
        >>> config = ModelFolderConfig(
        ...     num_classes=751, embedding_dim=1536, height=384, width=128, mean=(0.5,) * 3,
        ...     std=(0.25,) * 3, model={"variant": "stadb"}, provenance={"dataset": "market1501"},
        ... )
        >>> card = model_card(config)
        >>> card.startswith("---\nlibrary_name: stadb-reid"), "**market1501** (751 identities)" in card
        (True, True)
    """
    provenance = config.provenance
    model = config.model
    description = ", ".join(
        f"{key} `{model[key]}`" for key in ("variant", "attention", "backbone") if key in model
    )
    recipe = provenance.get("recipe")
    return f"""---
library_name: stadb-reid
tags:
- person-re-identification
- stadb
- pytorch
---

# STADB person re-identification model

A {config.embedding_dim}-d person embedding network ({description}).
Trained on **{provenance.get("dataset", "an unrecorded dataset")}** ({config.num_classes} identities).
Crops of the same person lie close in Euclidean distance (cosine distance once L2-normalised).

## Use

```python
from stadb_reid.inference import ReIDExtractor

extractor = ReIDExtractor("path/to/this/folder")  # or STADBNet.from_pretrained(...) for the network
embeddings = extractor(["person.jpg"])  # (1, {config.embedding_dim}) float32, L2-normalised
```

## Input

RGB, resized to {config.height} x {config.width} (height x width; bilinear, antialiased).
Pixels scaled to [0, 1], then normalised with mean `{list(config.mean)}` and std `{list(config.std)}`.

## Training data and recipe

Dataset: `{provenance.get("dataset")}`. Recipe: {f"`{recipe}`" if recipe else "not named"}.
Network settings (`model` in `config.yaml`):

```yaml
{OmegaConf.to_yaml(OmegaConf.create(model)).rstrip()}
```

## Metrics

{_metrics_table(provenance.get("metrics") or {})}
## Provenance

- Command: `{provenance.get("command") or "not recorded"}`
- Code commit: `{provenance.get("commit") or "not recorded"}`
- Files: `config.yaml` (network and preprocessing), `model.safetensors` (the weights alone: loading
  them runs no code), this card.
"""
