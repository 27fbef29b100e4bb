r"""Soft-margin batch-hard triplet loss.

Implements the batch-hard triplet loss with the soft margin of Hermans, Beyer & Leibe,
"In Defense of the Triplet Loss for Person Re-Identification" (arXiv:1703.07737, 2017), which STADB
uses as its metric-learning objective next to the identity classification loss.

For a batch of embeddings :math:`f_1, \dots, f_N` with labels :math:`y_1, \dots, y_N` and Euclidean
distances :math:`D_{ij} = \lVert f_i - f_j \rVert_2`, every anchor :math:`a` is paired with its
hardest positive (the farthest other sample with the same label) and its hardest negative (the
nearest sample with a different label):

.. math::

    \ell_a = \operatorname{softplus}\Big(\max_{p \ne a,\; y_p = y_a} D_{ap}
             - \min_{n:\; y_n \ne y_a} D_{an}\Big),
    \qquad \operatorname{softplus}(x) = \log(1 + e^x).

The functional form is :func:`soft_margin_batch_hard_triplet`; the module form is
:class:`SoftMarginBatchHardTriplet`. Non-finite features propagate: a batch with a NaN or infinite
feature gives a NaN loss, never a finite one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stadb_layers.checks import check_in_interval

__all__ = ["SoftMarginBatchHardTriplet", "soft_margin_batch_hard_triplet"]


def _check_reduction(reduction: str) -> None:
    if reduction != "mean" and reduction != "sum" and reduction != "none":
        raise ValueError(f"reduction must be one of 'mean', 'sum' or 'none', got '{reduction}'")


def _check_margin(margin: float | None) -> None:
    if margin is not None:
        check_in_interval(margin, "margin", 0.0, math.inf, low_closed=True, high_closed=False)


def _check_inputs(features: Tensor, labels: Tensor) -> None:
    if features.dim() != 2:
        raise ValueError(f"features must be a 2-D (N, D) tensor, got {features.dim()} dimensions")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating tensor, got dtype {features.dtype}")
    if features.shape[1] == 0:
        raise ValueError("features must have at least one feature dimension, got shape (N, 0)")
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D (N,) tensor, got {labels.dim()} dimensions")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must hold one label per row of features, got {labels.shape[0]} labels "
            f"for {features.shape[0]} rows"
        )


def _pairwise_euclidean(x: Tensor, scale: Tensor, eye: Tensor) -> Tensor:
    """Euclidean distance matrix of the rows of ``x`` (N >= 1, D >= 1) from the Gram matrix.

    ``scale`` is ``x.detach().abs().amax()`` and ``eye`` the boolean identity matrix, which the caller
    also needs. The features are rescaled to a largest coordinate of 1 and centred before the Gram matrix
    is formed: the distances do not change, but huge inputs cannot overflow and a large common offset does
    not cancel catastrophically. The scales are detached, which is exact because the distance is positively
    homogeneous of degree one. The diagonal is exactly zero, and squared distances at or below the floor
    (coinciding rows) give exactly zero with a zero gradient instead of the infinite slope of ``sqrt`` at 0.
    """
    one = torch.ones((), dtype=x.dtype, device=x.device)
    scale = torch.where(scale > 0, scale, one)
    x = x / scale
    x = x - x.mean(dim=0, keepdim=True)
    spread = x.detach().abs().amax()
    spread = torch.where(spread > 0, spread, one)
    x = x / spread

    # The squared distances are those of centred features whose largest coordinate is 1, so this floor
    # is relative to the spread of the batch. Below it a distance is exactly 0 with a zero gradient;
    # above it the slope of the square root is at most 1 / (2 * sqrt(1e-12)) = 5e5. (A local, not a
    # module constant: TorchScript cannot read global floats.)
    floor = 1e-12
    gram = x @ x.t()
    # The squared norms are the Gram matrix's own diagonal (so that D_ii = 0 exactly), read by a masked
    # sum rather than the view gram.diagonal(): torch.compile (inductor, torch 2.14, CPU) overwrote the
    # Gram buffer in place in the backward while still reading that view, and the gradients were wrong.
    sq_norms = torch.where(eye, gram, torch.zeros_like(gram)).sum(dim=1)
    squared = (sq_norms.unsqueeze(1) + sq_norms.unsqueeze(0)) - 2.0 * gram
    apart = squared > floor
    dist = torch.where(apart, squared.clamp(min=floor).sqrt(), torch.zeros_like(squared))
    return dist * spread * scale


def _batch_hard_loss(
    features: Tensor, labels: Tensor, normalize: bool, margin: float | None, reduction: str
) -> Tensor:
    # Accumulate in float32 at least, so fp16 / bf16 features do not lose the Gram-matrix cancellation.
    x = features.float() if features.element_size() < 4 else features
    n = x.shape[0]
    if n == 0:
        # Empty batch: a zero loss that is still connected to features.
        return x.sum(dim=1) * 0.0 if reduction == "none" else x.sum() * 0.0
    if normalize:
        x = F.normalize(x, p=2.0, dim=1)
    labels = labels.to(device=x.device)

    magnitude = x.detach().abs().amax()
    # 0, or NaN when a feature is NaN or infinite: added to every anchor's loss, because the masks below
    # would turn NaN distances into a finite loss (ln 2 with the soft margin). No device sync.
    nonfinite = magnitude * 0.0
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    dist = _pairwise_euclidean(x, magnitude, eye)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same & ~eye
    negative = ~(same | eye)  # eye: a label that is not equal to itself (NaN) is never its own negative

    # Distances are >= 0, so filling non-positives with 0 cannot change the maximum of a row that has
    # a positive; amax / amin split the gradient evenly between tied candidates.
    hardest_positive = torch.where(positive, dist, torch.zeros_like(dist)).amax(dim=1)
    hardest_negative = torch.where(negative, dist, torch.full_like(dist, math.inf)).amin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)

    zeros = torch.zeros_like(hardest_positive)
    gap = torch.where(valid, hardest_positive - hardest_negative, zeros)
    per_anchor = F.softplus(gap) if margin is None else F.relu(gap + margin)
    per_anchor = torch.where(valid, per_anchor, zeros) + nonfinite

    if reduction == "none":
        return per_anchor
    total = per_anchor.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1).to(total.dtype)


def _soft_margin_batch_hard_triplet(
    features: Tensor, labels: Tensor, normalize: bool, margin: float | None, reduction: str
) -> Tensor:
    """Positional, TorchScript-compatible form of :func:`soft_margin_batch_hard_triplet`."""
    _check_inputs(features, labels)
    _check_margin(margin)
    _check_reduction(reduction)
    if not torch.jit.is_scripting():
        # Autocast would run the Gram matmul in reduced precision; switch it off for the loss. A
        # scripted graph cannot do this (TorchScript ignores the context manager).
        device_type = features.device.type
        if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
            with torch.autocast(device_type, enabled=False):
                return _batch_hard_loss(features, labels, normalize, margin, reduction)
    return _batch_hard_loss(features, labels, normalize, margin, reduction)


def soft_margin_batch_hard_triplet(
    features: Tensor,
    labels: Tensor,
    *,
    normalize: bool = False,
    margin: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Batch-hard triplet loss with a soft (or optional hard) margin.

    With Euclidean (not squared) distances :math:`D_{ij} = \lVert f_i - f_j \rVert_2`, each anchor
    :math:`a` that has at least one positive and one negative in the batch contributes

    .. math::

        \ell_a = \operatorname{softplus}\big(D_{a p^*} - D_{a n^*}\big), \qquad
        p^* = \operatorname*{arg\,max}_{p \ne a,\; y_p = y_a} D_{ap}, \quad
        n^* = \operatorname*{arg\,min}_{n:\; y_n \ne y_a} D_{an},

    or, when ``margin`` :math:`m` is given, the hard-margin variant
    :math:`\ell_a = \max(0,\; D_{a p^*} - D_{a n^*} + m)`.

    Any number of instances per label is allowed. Anchors without a positive (a label seen once) or
    without a negative (a batch with a single label) are left out. The distance matrix comes from the
    Gram matrix (no ``(N, N, D)`` intermediate); coinciding features have distance exactly 0 and a
    finite (zero) gradient, and the computation is rescaled so that huge features cannot overflow.

    Reference:
        A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for Person
        Re-Identification", arXiv:1703.07737, 2017.

    Args:
        features: Embeddings of shape ``(N, D)``, any floating dtype. ``float16`` / ``bfloat16`` are
            computed in ``float32``, and autocast is switched off inside the loss (except when the
            caller is TorchScript, which cannot switch it off).
        labels: Identity labels of shape ``(N,)``, of any dtype that supports ``==`` (usually
            integer); moved to the device of ``features``.
        normalize: L2-normalise the features (:func:`torch.nn.functional.normalize`) first.
        margin: ``None`` (default) for the soft margin ``softplus``; a finite number ``>= 0`` for the
            hard margin ``relu(d_ap - d_an + margin)``.
        reduction: ``"mean"`` over the valid anchors, ``"sum"``, or ``"none"``.

    Returns:
        A scalar for ``"mean"`` / ``"sum"``; shape ``(N,)`` for ``"none"``, with ``0`` for the anchors
        that were left out. The dtype is ``float32`` for 16-bit ``features`` and the dtype of
        ``features`` otherwise. When no anchor is valid -- including an empty batch ``N == 0``, which
        is allowed -- the loss is ``0`` and stays connected to ``features``, so ``backward()`` gives
        zero gradients. If any feature is NaN or infinite the loss is NaN (every entry for ``"none"``)
        and its gradients contain NaN: non-finite features propagate, they never give a finite loss,
        and nothing raises (that would need a device sync).

    Note:
        Keyword-only arguments are not TorchScript; to script the loss, script
        :class:`SoftMarginBatchHardTriplet`. ``torch.compile(fullgraph=True)`` works for both.

    Raises:
        ValueError: If ``features`` is not a 2-D floating tensor with ``D >= 1``, ``labels`` is not
            1-D with one label per row, ``margin`` is negative or not finite, or ``reduction`` is
            unknown.

    Examples:
        >>> features = torch.tensor([[0.0], [1.0], [3.0], [4.0]])
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> soft_margin_batch_hard_triplet(features, labels)  # mean of softplus(-2, -1, -1, -2)
        tensor(0.2201)
        >>> soft_margin_batch_hard_triplet(features, labels, margin=1.5, reduction="none")
        tensor([0.0000, 0.5000, 0.5000, 0.0000])
    """
    return _soft_margin_batch_hard_triplet(features, labels, normalize, margin, reduction)


class SoftMarginBatchHardTriplet(nn.Module):
    r"""Module form of :func:`soft_margin_batch_hard_triplet` (Hermans, Beyer & Leibe, 2017).

    For every anchor with a positive and a negative in the batch,

    .. math::

        \ell_a = \operatorname{softplus}\Big(\max_{p \ne a,\; y_p = y_a} \lVert f_a - f_p \rVert_2
                 - \min_{n:\; y_n \ne y_a} \lVert f_a - f_n \rVert_2\Big),

    or :math:`\max(0,\, d_{ap} - d_{an} + m)` with a hard margin :math:`m`. The module has no
    parameters and is TorchScript- and ``torch.compile``-compatible.

    Reference:
        A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for Person
        Re-Identification", arXiv:1703.07737, 2017.

    Args:
        normalize: L2-normalise the features first.
        margin: ``None`` (default) for the soft margin, or a finite hard margin ``>= 0``.
        reduction: ``"mean"`` (over valid anchors), ``"sum"`` or ``"none"`` (per anchor, ``0`` for
            anchors without a positive or a negative).

    Shape:
        - features: :math:`(N, D)`, floating.
        - labels: :math:`(N,)`.
        - Output: scalar, or :math:`(N,)` for ``reduction="none"``.

    Examples:
        >>> criterion = SoftMarginBatchHardTriplet()
        >>> features = torch.randn(8, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
        >>> loss = criterion(features, labels)
        >>> loss.backward()
        >>> bool(loss > 0), features.grad.shape
        (True, torch.Size([8, 16]))
        >>> SoftMarginBatchHardTriplet(margin=0.3)
        SoftMarginBatchHardTriplet(normalize=False, margin=0.3, reduction='mean')
    """

    def __init__(self, normalize: bool = False, margin: float | None = None, reduction: str = "mean"):
        super().__init__()
        _check_margin(margin)
        _check_reduction(reduction)
        self.normalize = bool(normalize)
        self.margin = None if margin is None else float(margin)
        self.reduction = reduction

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Return the loss of ``features`` (N, D) with identity ``labels`` (N,)."""
        return _soft_margin_batch_hard_triplet(features, labels, self.normalize, self.margin, self.reduction)

    def extra_repr(self) -> str:
        """Hyper-parameters shown in ``repr``."""
        return f"normalize={self.normalize}, margin={self.margin}, reduction={self.reduction!r}"
