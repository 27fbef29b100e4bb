"""The ``README.md`` model card of a model folder: what the model is, how it was made, how to use it.

The card opens with the Hugging Face Hub's YAML front matter (``library_name``, ``tags``), so the
folder can be uploaded as a Hub repo as it is. :func:`run_provenance` collects what the card says
about the model's making: the dataset, the recipe, how the backbone started, the run's figures and how
they were measured, the training command line and the commit.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .config import ModelFolderConfig

__all__ = ["command_line", "model_card", "run_provenance"]

_PACKAGE = Path(__file__).resolve().parents[2]  # stadb_reid/


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


def command_line() -> str | None:
    """This process's command line, as a shell would take it back (``None`` when there is none).

    ``python -m stadb_reid ...`` is given as the ``stadb-reid ...`` it is the same as.
    """
    if not sys.argv or not sys.argv[0]:
        return None
    program = Path(sys.argv[0])
    name = (
        "stadb-reid"
        if program.name == "__main__.py" and program.parent.name == "stadb_reid"
        else program.name
    )
    return shlex.join([name, *sys.argv[1:]])


def run_provenance(run_config: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How a model was made: dataset, recipe, initialisation, figures, protocol, commands and commit.

    Args:
        run_config: The run's config as a plain dict.
        metrics: The run's ``metrics.json``: its numbers (rank-1, mAP, epochs...) are kept, and its
            ``recipe`` and ``command`` (the training command line) when it has them.

    Returns:
        ``dataset``, ``recipe`` (``None`` when not recorded), ``initialisation`` (how the backbone
        started), ``metrics``, ``protocol`` (how they were measured), ``train_command`` (``None``
        when not recorded), ``command`` (this process's command line, which wrote the folder) and
        ``commit`` (the code's git commit, ``None`` outside a git checkout).
    """
    metrics = metrics or {}
    numbers = {
        key: value
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return {
        "dataset": run_config["data"]["dataset"],
        "recipe": metrics.get("recipe") or run_config.get("recipe"),
        "initialisation": _initialisation(run_config.get("model", {})),
        "metrics": numbers,
        "protocol": _protocol(run_config.get("eval", {})),
        "train_command": metrics.get("command"),
        "command": command_line(),
        "commit": _git_commit(),
    }


def _initialisation(model: Mapping[str, Any]) -> str:
    if model.get("weights"):
        return f"backbone from the weights file `{Path(str(model['weights'])).name}`"
    if model.get("pretrained"):
        return f"backbone pretrained on ImageNet (`{model.get('backbone')}` weights through timm)"
    return "from scratch: random initialisation, no pretrained weights"


def _protocol(evaluation: Mapping[str, Any]) -> str:
    def said(key: str) -> str:
        return "yes" if evaluation.get(key) else "no"

    return (
        "every query against the gallery, without the gallery images of its own identity and camera "
        f"(Market-1501 protocol, single query); {evaluation.get('metric', 'euclidean')} distance; "
        f"flip-averaged features: {said('flip')}; re-ranking: {said('rerank')}"
    )


#: How the card names and rounds the figures of a run (percentages to one decimal).
_FIGURES = {
    "rank1": ("rank-1", "{:.1f} %"),
    "rank5": ("rank-5", "{:.1f} %"),
    "rank10": ("rank-10", "{:.1f} %"),
    "mAP": ("mAP", "{:.1f} %"),
    "mINP": ("mINP", "{:.1f} %"),
    "mAP_at_50": ("mAP cut at rank 50", "{:.1f} %"),
    "epochs": ("epochs", "{:.0f}"),
    "num_parameters": ("parameters", "{:,.0f}"),
    "train_seconds": ("training time", "{:.0f} s"),
}


def _metrics_table(metrics: dict[str, object], dataset: str, protocol: str | None) -> str:
    if not metrics:
        return "Not recorded (the model was exported from a checkpoint without its run's `metrics.json`).\n"
    rows = ""
    for name, value in metrics.items():
        label, form = _FIGURES.get(name, (f"`{name}`", "{:.4g}"))
        rows += f"| {label} | {form.format(value)} |\n"
    header = f"The run's figures on the test split of `{dataset}`"
    header += f": {protocol}.\n\n" if protocol else ".\n\n"
    return header + "| metric | value |\n| --- | --- |\n" + rows


def model_card(config: ModelFolderConfig) -> str:
    r"""The Markdown model card of a folder described by ``config``.

    Examples:
        >>> from stadb_reid.model.folder.config import ModelFolderConfig
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
    recipe, train_command = provenance.get("recipe"), provenance.get("train_command")
    dataset = provenance.get("dataset", "an unrecorded dataset")
    return f"""---
library_name: stadb-reid
tags:
- person-re-identification
- stadb
- pytorch
---

# STADB person re-identification model

A {config.embedding_dim}-d person embedding network ({description}).
Trained on **{dataset}** ({config.num_classes} identities).
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

Dataset: `{provenance.get("dataset")}`. Recipe: {f"`{recipe}`" if recipe else "not recorded"}.
Initialisation: {provenance.get("initialisation") or "not recorded"}.
Training command: {f"`{train_command}`" if train_command else "not recorded"}.
Network settings (`model` in `config.yaml`):

```yaml
{OmegaConf.to_yaml(OmegaConf.create(model)).rstrip()}
```

## Metrics

{_metrics_table(provenance.get("metrics") or {}, dataset, provenance.get("protocol"))}
## Provenance

- Training command: {f"`{train_command}`" if train_command else "not recorded"}
- This folder written by: `{provenance.get("command") or "not recorded"}`
- Code commit: `{provenance.get("commit") or "not recorded"}`
- Files: `config.yaml` (network and preprocessing), `model.safetensors` (the weights alone: loading
  them runs no code), this card.
"""
