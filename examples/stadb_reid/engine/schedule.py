"""The paper's learning-rate schedule: a stepped linear warm-up, then step decay.

A warm-up of ``N = warmup_epochs`` epochs in steps of ``s = warmup_step`` starts at ``base_lr * s / N``
in epoch 1 and rises by ``base_lr * s / N`` at every multiple of ``s`` after epoch 1, never above
``base_lr``; from epoch ``N`` on the rate is ``base_lr`` times ``gamma`` per milestone passed. Epochs
count from 1, as in the reference code, whose ``lr = 1e-4 * (epoch // 5 + 1)`` below epoch 50 this
is for the defaults (``base_lr=1e-3``, 50 warm-up epochs in steps of 5, milestones 200 and 300):
its first stage is one epoch short (epochs 1-4). With one-epoch steps the reference formula would
skip its first stage (a warm-up of 2 epochs would start at the full rate); here epoch 1 always runs
at the first stage, so ``N = 2, s = 1`` gives half the rate in epoch 1 and the full rate from epoch 2.
"""

from collections.abc import Callable, Sequence
from functools import partial

from ..config.schema import OptimConfig

__all__ = ["learning_rate", "optim_schedule", "schedule_changes"]


def learning_rate(
    epoch: int,
    *,
    base_lr: float = 1e-3,
    warmup_epochs: int = 50,
    warmup_step: int = 5,
    milestones: Sequence[int] = (200, 300),
    gamma: float = 0.1,
) -> float:
    """Learning rate of a 1-based ``epoch``.

    Examples:
        >>> [round(learning_rate(e), 6) for e in (1, 4, 5, 49, 50, 199, 200, 300, 600)]
        [0.0001, 0.0001, 0.0002, 0.001, 0.001, 0.001, 0.0001, 1e-05, 1e-05]
        >>> [learning_rate(e, warmup_epochs=2, warmup_step=1, milestones=[5]) for e in range(1, 7)]
        [0.0005, 0.001, 0.001, 0.001, 0.0001, 0.0001]
    """
    if epoch < 1:
        raise ValueError(f"epoch counts from 1, got {epoch}")
    if warmup_step < 1:
        raise ValueError(f"warmup_step must be at least 1, got {warmup_step}")
    if epoch < warmup_epochs:
        rises = epoch // warmup_step - (1 if warmup_step == 1 else 0)  # epoch 1 is never a rise
        return base_lr * min(1.0, (rises + 1) * warmup_step / warmup_epochs)
    return base_lr * gamma ** sum(epoch >= milestone for milestone in milestones)


def optim_schedule(optim: OptimConfig) -> Callable[[int], float]:
    """The learning rate per 1-based epoch that ``optim`` sets."""
    return partial(
        learning_rate,
        base_lr=optim.base_lr,
        warmup_epochs=optim.warmup_epochs,
        warmup_step=optim.warmup_step,
        milestones=optim.milestones,
        gamma=optim.gamma,
    )


def schedule_changes(schedule: Callable[[int], float], epochs: int) -> list[tuple[int, int, float]]:
    """The epochs ``1..epochs`` of ``schedule`` as ``(first, last, rate)`` runs of one rate each.

    Examples:
        >>> schedule_changes(partial(learning_rate, warmup_epochs=2, warmup_step=1, milestones=[5]), 6)
        [(1, 1, 0.0005), (2, 4, 0.001), (5, 6, 0.0001)]
    """
    runs: list[tuple[int, int, float]] = []
    for epoch in range(1, epochs + 1):
        rate = schedule(epoch)
        if runs and runs[-1][2] == rate:
            runs[-1] = (runs[-1][0], epoch, rate)
        else:
            runs.append((epoch, epoch, rate))
    return runs
