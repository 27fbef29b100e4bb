"""Checks run before any training: the config's values, the dataset against the config, the output folder.

Everything a run can know to be wrong before its first step is reported here, in one line naming the
config key, path or count at fault, instead of as a traceback hours later.
"""

import math
import os
import tempfile
from pathlib import Path

from stadb_layers.checks import check_in_interval, check_int

from ..config import Config
from ..config.limits import check_config_limits
from ..config.schema import EpochMode
from ..data import ReIDDataset, available_datasets
from ..data.integrity import check_images_open
from ..data.transforms import cutout_side
from ..errors import ConfigError, PretrainedWeightsUnavailableError, UnreadableImageError
from ..evaluation.queries import has_match_in_other_camera
from ..model.backbone import check_pretrained_reachable
from ..model.config_checks import check_input_size, check_model_config
from .run_folder import RUN_FILES, owned_files

__all__ = ["check_dataset_fits", "prepare_output_dir", "validate_config"]


def _integer(value: int, key: str, minimum: int) -> None:
    try:
        check_int(value, key, minimum)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _number(value: float, key: str, low: float, high: float = math.inf, *, low_closed: bool = True) -> None:
    try:
        check_in_interval(value, key, low, high, low_closed=low_closed, high_closed=math.isfinite(high))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _choice(value: str, key: str, choices: list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def validate_config(config: Config) -> Config:
    """Check every value of ``config`` (the schema only checks types); return it unchanged.

    Raises:
        ConfigError: Naming the first key whose value is out of range or not a known choice.

    Examples:
        >>> from stadb_reid.config import load_config
        >>> validate_config(load_config(["market1501"], {"model.alpha": 2.0}))
        Traceback (most recent call last):
        ...
        stadb_reid.errors.ConfigError: model.alpha must lie in (0.0, 1.0], got 2.0
    """
    check_config_limits(config)  # first: a huge value must not reach the CBAM built below
    data, model, optim = config.data, config.model, config.optim
    _choice(data.dataset.lower(), "data.dataset", available_datasets())
    check_input_size(data.height, data.width)
    _integer(data.num_identities, "data.num_identities", 2)
    _integer(data.num_instances, "data.num_instances", 1)
    _integer(data.num_workers, "data.num_workers", 0)
    _integer(data.test_batch_size, "data.test_batch_size", 1)
    _integer(data.padding, "data.padding", 0)
    _number(data.erasing_prob, "data.erasing_prob", 0.0, 1.0)
    _number(data.cutout_prob, "data.cutout_prob", 0.0, 1.0)
    if data.cutout_size is not None:  # None: 1/6 of the height
        _integer(data.cutout_size, "data.cutout_size", 1)
    check_model_config(model)  # the rules a model folder's config.yaml obeys too
    if model.weights and not Path(model.weights).is_file():
        raise ConfigError(f"model.weights: file not found: {model.weights}")
    _integer(optim.epochs, "optim.epochs", 1)
    _number(optim.base_lr, "optim.base_lr", 0.0, low_closed=False)
    _number(optim.weight_decay, "optim.weight_decay", 0.0)
    _integer(optim.warmup_epochs, "optim.warmup_epochs", 0)
    _integer(optim.warmup_step, "optim.warmup_step", 1)
    for milestone in optim.milestones:
        _integer(milestone, "optim.milestones", 1)
    if list(optim.milestones) != sorted(set(optim.milestones)):
        raise ConfigError(f"optim.milestones must be increasing, got {list(optim.milestones)}")
    _number(optim.gamma, "optim.gamma", 0.0, 1.0, low_closed=False)
    _number(optim.label_smoothing, "optim.label_smoothing", 0.0, 0.999)
    _integer(config.eval.every, "eval.every", 0)
    _integer(config.eval.ap_at, "eval.ap_at", 0)
    _integer(config.seed, "seed", 0)
    if not config.output_dir:
        raise ConfigError("output_dir must not be empty")
    return config


def check_dataset_fits(config: Config, dataset: ReIDDataset, world_size: int = 1) -> None:
    """Check ``config`` against the loaded ``dataset`` before anything heavy is built or downloaded.

    Every problem found is reported, in one message, with the setting that fixes it: a Cutout square
    that does not fit the images, a P x K batch the dataset cannot fill, pretrained weights that
    cannot be downloaded, a test set with nothing to evaluate, images that cannot be read.

    Either epoch mode needs P x ``world_size`` identities: every process's batch holds P identities
    of its own. An identity epoch (``data.epoch=identities``) then has ``identities // (P x
    world_size)`` batches per process; with fewer identities it would have none.

    Args:
        config: The run's config (``data.num_identities`` is P).
        dataset: The loaded dataset.
        world_size: Processes sharing the identities of an epoch.

    Raises:
        ConfigError: Listing every problem, each with its fix.
    """
    found = [
        problem
        for problem in (
            _cutout_problem(config),
            _batch_problem(config, dataset, world_size),
            _query_problem(dataset),
            _weights_problem(config),
            _images_problem(dataset),
        )
        if problem
    ]
    if len(found) == 1:
        raise ConfigError(found[0])
    if found:
        numbered = "; ".join(f"({number}) {problem}" for number, problem in enumerate(found, 1))
        raise ConfigError(f"{len(found)} problems with this run, all found before it started: {numbered}")


def _images_problem(dataset: ReIDDataset) -> str | None:
    try:
        check_images_open(dataset)
    except UnreadableImageError as error:  # lists every image of any split that cannot load
        return str(error)
    return None


def _cutout_problem(config: Config) -> str | None:
    data = config.data
    side = cutout_side(data.height, data.cutout_size)
    if data.cutout_prob == 0 or side < min(data.height, data.width):
        return None
    # Cutout leaves an image whole when its square does not fit, so this would cut nothing.
    scaled = cutout_side(data.height)
    fix = f"--set data.cutout_size=null (1/6 of the height: {scaled}) or " if scaled < data.width else ""
    return (
        f"data.cutout_size={side} does not fit the {data.height} x {data.width} images (Cutout would cut "
        f"nothing): {fix}--set data.cutout_size=N below {min(data.height, data.width)}, or "
        "--set data.cutout_prob=0 to turn Cutout off"
    )


def _batch_problem(config: Config, dataset: ReIDDataset, world_size: int) -> str | None:
    num_identities = dataset.num_train_pids
    needed = config.data.num_identities * world_size
    if num_identities >= needed:
        return None
    per_rank = f" x {world_size} processes" if world_size > 1 else ""
    per_epoch = (
        f" (data.epoch=identities gives one batch per {needed} identities)"
        if config.data.epoch == EpochMode.IDENTITIES
        else ""
    )
    fits = num_identities // world_size
    fix = (
        f"lower --num-identities to {fits} (--set data.num_identities={fits})"
        if fits >= 2
        else "a P x K batch needs at least 2 identities per process"
    )
    return (
        f"data.num_identities={config.data.num_identities}{per_rank} needs {needed} training "
        f"identities{per_epoch}, but {dataset.name} has {num_identities}; {fix}"
    )


def _query_problem(dataset: ReIDDataset) -> str | None:
    query, gallery = dataset.query, dataset.gallery
    valid = has_match_in_other_camera(
        [s.pid for s in query], [s.camid for s in query], [s.pid for s in gallery], [s.camid for s in gallery]
    )
    if valid.any():
        return None
    return (
        f"{dataset.name}: none of the {len(query)} queries has a gallery image of its identity from "
        "another camera, so the run could not be evaluated"
    )


def _weights_problem(config: Config) -> str | None:
    if not config.model.pretrained or config.model.weights:
        return None
    try:
        check_pretrained_reachable(config.model.backbone)
    except PretrainedWeightsUnavailableError:
        return (
            f"model.pretrained=true needs the ImageNet weights of {config.model.backbone}, but the model "
            "hub is unreachable (offline?): --no-pretrained (--set model.pretrained=false) trains from "
            "scratch, --weights FILE loads a local file"
        )
    return None


def prepare_output_dir(output_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Create ``output_dir``, check it is writable, and refuse to train over an earlier run unasked.

    Args:
        output_dir: The run's output folder.
        resume: The run continues the one in the folder.
        overwrite: Remove the earlier run's files (only
            :data:`~stadb_reid.engine.run_folder.RUN_FILES`) and start afresh.

    Raises:
        ConfigError: ``output_dir`` is a file or not writable, or holds a run and neither ``resume``
            nor ``overwrite`` is set.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output folder {output_dir} is a file")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create output folder {output_dir}: {error.strerror}") from None
    try:  # a probe, since permission bits say nothing for root or a read-only mount
        probe, probe_path = tempfile.mkstemp(dir=output_dir, prefix=".write-test-")
    except OSError as error:
        raise ConfigError(f"output folder {output_dir} is not writable: {error.strerror}") from None
    os.close(probe)
    os.unlink(probe_path)
    earlier = [name for name in RUN_FILES if (output_dir / name).exists()]
    if not earlier or resume:
        return
    if not overwrite:
        raise ConfigError(
            f"{output_dir} holds an earlier run ({', '.join(earlier)}); pass --overwrite to replace it "
            "or choose another --output-dir (train also takes --resume to continue it)"
        )
    for name in earlier:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            # Only the files the run wrote there; anything else in the folder stays.
            for owned in [file for pattern in owned_files(name) for file in path.glob(pattern)]:
                owned.unlink()
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink()
