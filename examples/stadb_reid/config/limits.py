"""Upper bounds of the config values that size memory, processes or time.

A value past its bound is a typo or a hostile file far more often than a wish (the paper trains at
384 x 128 with batches of 32 x 4 images for 600 epochs), and it would exhaust the machine before any
other check could fail: ``data.height=1000000`` asks for terabytes, ``data.num_workers=100000000``
for as many processes. :func:`check_config_limits` refuses each, naming the key and its bound,
before anything is built or allocated; ``stadb-reid info`` and ``train`` run it first.

Examples:
    >>> from stadb_reid.config import load_config
    >>> check_config_limits(load_config(overrides={"data.height": 1_000_000}))
    Traceback (most recent call last):
    ...
    stadb_reid.errors.ConfigError: data.height must be at most 2048, got 1000000
"""

from functools import reduce

from ..errors import ConfigError
from .schema import Config

__all__ = [
    "CONFIG_LIMITS",
    "MAX_BATCH_IMAGES",
    "MAX_BATCH_PIXELS",
    "MAX_JOBS",
    "MAX_THREADS",
    "check_config_limits",
    "check_parallelism",
]

#: Most images in one batch, training (P x K) or test: 32 times the paper's 32 x 4.
MAX_BATCH_IMAGES = 4096
#: Most pixels in one batch of ``data.height`` x ``data.width`` images, training or test: 2^28, 42
#: times the paper's 32 x 4 x 384 x 128, and 3 GiB for the float32 input alone.
MAX_BATCH_PIXELS = 2**28
#: Most runs of a sweep at a time (``stadb-reid sweep --jobs``).
MAX_JOBS = 256
#: Most torch threads of one run of a sweep (``--threads``, passed on as ``OMP_NUM_THREADS``).
MAX_THREADS = 1024
#: Largest value of each integer key (inclusive); for ``optim.milestones``, of every milestone.
CONFIG_LIMITS: dict[str, int] = {
    "data.height": 2048,
    "data.width": 2048,
    "data.num_identities": 1024,
    "data.num_instances": 256,
    "data.num_workers": 128,
    "data.test_batch_size": MAX_BATCH_IMAGES,
    "data.padding": 256,
    "data.cutout_size": 2048,
    "model.cbam.kernel_size": 63,
    "optim.epochs": 100_000,
    "optim.warmup_epochs": 100_000,
    "optim.warmup_step": 100_000,
    "optim.milestones": 100_000,
    "eval.every": 100_000,
    "seed": 2**32 - 1,  # NumPy's seeds end there
}


def _value(config: Config, key: str) -> object:
    return reduce(getattr, key.split("."), config)


def check_config_limits(config: Config) -> None:
    """Raise :class:`ConfigError` naming the first key of ``config`` above its bound.

    Checks every key of :data:`CONFIG_LIMITS`, then the training batch (P x K images) and the test
    batch against :data:`MAX_BATCH_IMAGES` and :data:`MAX_BATCH_PIXELS`. Values below their domain
    (zero, negative) are left to the config's other checks.
    """
    for key, limit in CONFIG_LIMITS.items():
        value = _value(config, key)
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, int) and number > limit:
                raise ConfigError(f"{key} must be at most {limit}, got {number}")
    data = config.data
    if min(data.height, data.width, data.num_identities, data.num_instances, data.test_batch_size) < 1:
        return
    pixels = data.height * data.width
    images = data.num_identities * data.num_instances
    if images > MAX_BATCH_IMAGES or images * pixels > MAX_BATCH_PIXELS:
        raise ConfigError(
            f"a training batch of data.num_identities x data.num_instances = {images} images of "
            f"{data.height} x {data.width} is too large: at most {MAX_BATCH_IMAGES} images and "
            f"{MAX_BATCH_PIXELS:,} pixels"
        )
    if data.test_batch_size * pixels > MAX_BATCH_PIXELS:
        raise ConfigError(
            f"data.test_batch_size={data.test_batch_size} images of {data.height} x {data.width} is "
            f"{data.test_batch_size * pixels:,} pixels a batch, more than {MAX_BATCH_PIXELS:,}; lower it"
        )


def check_parallelism(jobs: int, threads: int | None) -> None:
    """Raise :class:`ConfigError` unless ``jobs`` (and ``threads``, unless ``None``) are integers in range.

    Examples:
        >>> check_parallelism(2, -3)
        Traceback (most recent call last):
        ...
        stadb_reid.errors.ConfigError: --threads must be an integer from 1 to 1024, got -3
    """
    for name, value, limit in (("--jobs", jobs, MAX_JOBS), ("--threads", threads, MAX_THREADS)):
        if value is None and name == "--threads":
            continue
        if type(value) is not int or not 1 <= value <= limit:
            raise ConfigError(f"{name} must be an integer from 1 to {limit}, got {value!r}")
