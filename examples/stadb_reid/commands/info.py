"""``stadb-reid info``: the fully resolved config of a command line, the size of its network, its schedule.

Nothing is read, downloaded or trained: the network is built without pretrained weights, with one
class per training identity of the config's dataset (known for the bundled datasets) or as many as
given.
"""

import dataclasses
import inspect

import torch
from omegaconf import OmegaConf

from ..config import Config, config_to_dict
from ..config.schema import DataConfig, OptimConfig
from ..engine.schedule import optim_schedule, schedule_changes
from ..errors import ConfigError

__all__ = ["KNOWN_NUM_CLASSES", "describe_config", "describe_schedule", "num_classes_of", "parameter_count"]

#: Training identities of the bundled real datasets: CUHK03-NP's 767 for both box sets, MSMT17's
#: 1,041 (its validation images belong to training identities).
KNOWN_NUM_CLASSES = {"market1501": 751, "dukemtmc": 702, "cuhk03": 767, "msmt17": 1041, "celeb_reid": 632}
# VIPeR's default split trains on half of its identities; its ``num_train_ids`` option changes that.
_VIPER_IDENTITIES = 632


def num_classes_of(data: DataConfig) -> int:
    """The number of training identities of ``data``'s dataset, without reading the dataset.

    Raises:
        ConfigError: The dataset is not one whose identities are known beforehand (``folder``, or
            a registered adapter of your own).

    Examples:
        >>> num_classes_of(DataConfig(dataset="market1501"))
        751
        >>> num_classes_of(DataConfig(dataset="synthetic", options={"num_train_identities": 48}))
        48
    """
    name = data.dataset.lower()
    if name == "synthetic":
        from ..data import generate_synthetic_reid

        default = inspect.signature(generate_synthetic_reid).parameters["num_train_identities"].default
        return int(data.options.get("num_train_identities", default))
    if name == "viper":
        return int(data.options.get("num_train_ids") or _VIPER_IDENTITIES // 2)
    if name in KNOWN_NUM_CLASSES:
        return KNOWN_NUM_CLASSES[name]
    raise ConfigError(
        f"the number of training identities of dataset {data.dataset!r} is not known without reading "
        "it; pass --num-classes N"
    )


def parameter_count(config: Config, num_classes: int) -> int:
    """Parameters the network of ``config`` registers for ``num_classes`` identities.

    The network is built on the meta device, with shapes but no weights (``model.pretrained`` and
    ``model.weights`` are ignored): it needs neither memory, the internet nor the weights file.

    Examples:
        >>> from stadb_reid.config import load_config
        >>> parameter_count(load_config(["ablation_global"]), 751)  # ResNet-50 and the global head
        24943919
    """
    from ..engine import build_model

    bare = dataclasses.replace(config.model, pretrained=False, weights=None)
    with torch.device("meta"):
        model = build_model(dataclasses.replace(config, model=bare), num_classes)
    return sum(parameter.numel() for parameter in model.parameters())


def describe_config(config: Config, num_classes: int | None = None) -> str:
    """``config`` as YAML, then its learning rate per epoch and its parameter count as YAML comments.

    The text loads back as the same config (``load_config([file])``), the comments being ignored.

    Args:
        config: A resolved config.
        num_classes: Identities of the classifiers; default: :func:`num_classes_of` the dataset.

    Raises:
        ConfigError: ``num_classes`` is not given and the dataset's is not known beforehand.
    """
    classes = num_classes_of(config.data) if num_classes is None else num_classes
    count = parameter_count(config, classes)
    resolved = OmegaConf.to_yaml(config_to_dict(config))
    schedule = describe_schedule(config.optim)
    return f"{resolved}{schedule}# parameters: {count:,} ({count / 1e6:.2f} M) for {classes} classes\n"


def describe_schedule(optim: OptimConfig) -> str:
    """The learning rate of every epoch of ``optim``, one YAML comment line per run of one rate.

    Examples:
        >>> optim = OptimConfig(epochs=6, warmup_epochs=2, warmup_step=1, milestones=[5])
        >>> print(describe_schedule(optim), end="")
        # learning rate per epoch (6 epochs):
        #   epoch 1: 0.0005
        #   epochs 2-4: 0.001
        #   epochs 5-6: 0.0001
    """
    lines = [f"# learning rate per epoch ({optim.epochs} epochs):"]
    for first, last, rate in schedule_changes(optim_schedule(optim), optim.epochs):
        epochs = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        lines.append(f"#   {epochs}: {rate:.4g}")
    return "\n".join(lines) + "\n"
