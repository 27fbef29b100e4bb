"""The paper's learning-rate schedule: a stepped linear warm-up, then step decay.

With the defaults (``base_lr=1e-3``, 50 warm-up epochs in steps of 5, milestones 200 and 300) this
is the reference code's ``lr = 1e-4 * (epoch // 5 + 1)`` below epoch 50, then 1e-3 until epoch 200,
1e-4 until epoch 300 and 1e-5 after. Epochs count from 1, as in the reference code.
"""

from collections.abc import Sequence

__all__ = ["learning_rate"]


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
    """
    if epoch < 1:
        raise ValueError(f"epoch counts from 1, got {epoch}")
    if epoch < warmup_epochs:
        return base_lr * (epoch // warmup_step + 1) * warmup_step / warmup_epochs
    return base_lr * gamma ** sum(epoch >= milestone for milestone in milestones)
