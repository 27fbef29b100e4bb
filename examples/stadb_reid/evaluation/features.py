r"""Feature extraction for evaluation, with optional flip-test averaging.

With ``flip=True`` the embedding of an image is the mean of the embeddings of the image and of its
horizontal mirror, :math:`f(x) = \tfrac{1}{2}\,(\phi(x) + \phi(\operatorname{flip}(x)))`, a common
test-time augmentation in person re-identification (pedestrians are left-right symmetric). The raw
embeddings are averaged, before any normalisation or distance, as in the STADB authors' evaluator
(``(feature0 + feature1) / 2`` of the eval-mode outputs; for STADBNet, as for their BFE model, these
are the triplet features, taken before the classifier's BatchNorm and not L2-normalised).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

__all__ = ["Embeddings", "extract_features"]


class Embeddings(NamedTuple):
    """Embeddings of a split with their identities and cameras, in loader order (a 3-tuple).

    Attributes:
        features: ``(N, D)`` float32 CPU features.
        pids: ``(N,)`` int64 identities.
        camids: ``(N,)`` int64 camera ids.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> features, pids, camids = Embeddings(torch.zeros(2, 4), np.array([1, 2]), np.array([0, 1]))
        >>> tuple(features.shape), pids.tolist()
        ((2, 4), [1, 2])
    """

    features: Tensor
    pids: npt.NDArray[np.int64]
    camids: npt.NDArray[np.int64]


_IMAGE_KEYS = ("images", "image", "imgs", "img")
_PID_KEYS = ("pids", "pid")
_CAMID_KEYS = ("camids", "camid")


def _pick(batch: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in batch:
            return batch[key]
    raise KeyError(f"a dict batch must have one of the keys {keys}, got {sorted(batch)}")


def _unpack(batch: Any) -> tuple[Tensor, Any, Any]:
    if isinstance(batch, Mapping):
        return _pick(batch, _IMAGE_KEYS), _pick(batch, _PID_KEYS), _pick(batch, _CAMID_KEYS)
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes) and len(batch) >= 3:
        return batch[0], batch[1], batch[2]
    raise TypeError(
        "a loader batch must be a tuple/list (images, pids, camids, ...) or a dict with images, pids and "
        f"camids, got {type(batch).__name__}"
    )


def _labels(x: Any, n: int, name: str) -> npt.NDArray[np.int64]:
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    a = a.reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"a batch has {n} images but {a.shape[0]} {name}")
    return a.astype(np.int64)


def _embed(model: nn.Module, images: Tensor) -> Tensor:
    out = model(images)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model(images) must return an (N, D) embedding tensor in eval mode, got {shape}")
    return out


def extract_features(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device | str = "cpu",
    *,
    flip: bool = False,
    progress: bool = False,
) -> Embeddings:
    r"""Embed every image of a loader with ``model`` in eval mode.

    The model is switched to eval mode under :func:`torch.inference_mode` and put back in its previous
    mode afterwards. With ``flip=True`` each embedding is :math:`\tfrac12(\phi(x) + \phi(x'))`, with
    :math:`x'` the image mirrored along its width (last) axis.

    Args:
        model: Maps an ``(N, C, H, W)`` batch to ``(N, D)`` embeddings in eval mode.
        loader: Yields ``(images, pids, camids, ...)`` tuples (extra items are ignored) or dicts with
            ``images``/``img``, ``pids``/``pid`` and ``camids``/``camid``.
        device: Where the model runs; images are moved there.
        flip: Average the embeddings of each image and its horizontal flip.
        progress: Show a tqdm progress bar.

    Returns:
        :class:`Embeddings` ``(features, pids, camids)``: ``(N, D)`` float32 CPU features and ``(N,)``
        int64 identities and camera ids, in loader order; it unpacks like a 3-tuple.

    Raises:
        ValueError: If the model does not return one embedding per image, or labels do not match.
        TypeError: If a batch has an unknown structure.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> loader = [(torch.randn(2, 3, 2, 2), [1, 2], [0, 1]), (torch.randn(1, 3, 2, 2), [3], [0])]
        >>> feats, pids, camids = extract_features(model, loader, flip=True)
        >>> tuple(feats.shape), pids.tolist(), camids.tolist()
        ((3, 4), [1, 2, 3], [0, 1, 0])
    """
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    features: list[Tensor] = []
    pids: list[npt.NDArray[np.int64]] = []
    camids: list[npt.NDArray[np.int64]] = []
    batches: Iterable[Any] = loader
    if progress:
        tqdm = importlib.import_module("tqdm.auto").tqdm
        batches = tqdm(loader, desc="features", unit="batch")
    try:
        with torch.inference_mode():
            for batch in batches:
                images, batch_pids, batch_camids = _unpack(batch)
                if not isinstance(images, Tensor) or images.dim() < 2:
                    raise TypeError(f"images must be a batched tensor, got {type(images).__name__}")
                images = images.to(dev, non_blocking=True)
                emb = _embed(model, images).float()
                if flip:
                    emb = (emb + _embed(model, images.flip(-1)).float()) / 2
                features.append(emb.cpu())
                pids.append(_labels(batch_pids, images.shape[0], "pids"))
                camids.append(_labels(batch_camids, images.shape[0], "camids"))
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("the loader yielded no batch")
    # Concatenated outside inference mode: a normal tensor, usable in autograd-enabled code.
    return Embeddings(torch.cat(features), np.concatenate(pids), np.concatenate(camids))
