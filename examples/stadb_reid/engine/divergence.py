"""The non-finite guard: a NaN or infinite loss or gradient stops training before it reaches the weights.

A diverged run that carried on would train on NaN for the rest of its schedule and overwrite its
checkpoints with non-finite weights. The checks cost one device synchronisation per step (the loss is
read back for logging anyway) and one pass over the gradients, small against a ResNet-50 step. Under
fp16 mixed precision the gradient scaler owns the gradient check: it skips the steps whose scaled
gradients overflow and lowers the scale, which is normal, so only the loss is checked there.
"""

from collections.abc import Iterable

import torch

from ..errors import TrainingDivergedError

__all__ = ["TrainingDivergedError", "first_non_finite"]


def first_non_finite(named_tensors: Iterable[tuple[str, object]]) -> str | None:
    """The name of the first floating tensor holding a NaN or an infinity, or ``None`` if all are finite.

    Anything but a floating tensor (``None``, integer tensors, a module's extra state) is skipped. All
    tensors are checked with a single device synchronisation.

    Examples:
        >>> first_non_finite([("a", torch.ones(2)), ("b", torch.tensor([1.0, float("nan")]))])
        'b'
        >>> first_non_finite([("a", torch.ones(2)), ("steps", torch.tensor(3))]) is None
        True
    """
    checked = [
        (name, tensor)
        for name, tensor in named_tensors
        if isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex())
    ]
    if not checked:
        return None
    finite = torch.stack([tensor.isfinite().all().to(checked[0][1].device) for _, tensor in checked])
    if bool(finite.all()):
        return None
    return checked[int((~finite).nonzero()[0, 0])][0]
