"""Person embeddings in memory, for other programs: a tracker, a gallery index.

:class:`ReIDExtractor` loads a model folder (``stadb-reid export --format folder``, or the ``model/``
folder of a training run) and applies the model's own preprocessing, so a caller only hands over
images::

    extractor = ReIDExtractor("outputs/market1501/model", device="cuda")  # precision="auto": bf16 here
    embeddings = extractor(crops)  # crops: RGB arrays, PIL images or paths -> (N, D), L2-normalised
    similarity = embeddings @ gallery.T  # cosine similarity
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Literal, overload

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from stadb_layers.checks import check_non_negative_int, check_positive_int

from ..data.loaders import read_image
from ..data.synthetic import render_person
from ..errors import ConfigError
from ..model import STADBNet
from ..model.folder.config import ModelFolderConfig
from ..model.folder.files import load_model_folder, model_fingerprint
from .precision import Precision, build_runtime

__all__ = ["ImageInput", "Preprocess", "ReIDExtractor"]

ImageInput = Image.Image | npt.NDArray[np.uint8] | str | os.PathLike[str] | Tensor
"""One image: a PIL image, an ``(H, W, 3)`` uint8 RGB array, a file path, or a ``(3, H, W)`` tensor,
float in [0, 1] or uint8; an ``(N, 3, H, W)`` tensor or an ``(N, H, W, 3)`` uint8 array is a batch."""


class Preprocess:
    """A PIL image to the ``(3, height, width)`` uint8 tensor the model's input is made from.

    Resizes with Pillow's antialiased bilinear filter, as the trainer's test transform does; the
    scaling to [0, 1] and the normalisation follow on the batch, so ``DataLoader`` workers hand over
    a quarter of the bytes of float32. A plain object, so the workers can take it.

    Examples:
        >>> x = Preprocess(64, 32)(Image.new("RGB", (50, 120), (255, 0, 0)))
        >>> tuple(x.shape), x.dtype, x[0].min().item(), x[1].max().item()
        ((3, 64, 32), torch.uint8, 255, 0)
    """

    def __init__(self, height: int, width: int) -> None:
        self.size = (height, width)
        self.transform = v2.Compose([v2.Resize(self.size, antialias=True), v2.ToImage()])

    def __call__(self, image: Image.Image) -> Tensor:
        """The resized image as a uint8 tensor."""
        tensor: Tensor = self.transform(image).as_subclass(Tensor)
        return tensor


def _device(device: str | torch.device) -> torch.device:
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device must be cpu or cuda, got {device!r}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but torch sees no CUDA GPU; use device='cpu'")
    return target


def _image(item: object) -> Image.Image:
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, str | os.PathLike):
        return read_image(os.fspath(item))
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(
                f"an image array must be (H, W, 3) uint8 RGB, got shape {item.shape} dtype {item.dtype}"
            )
        return Image.fromarray(np.ascontiguousarray(item))
    raise TypeError(
        "an image must be a PIL image, an (H, W, 3) uint8 array, a path or a tensor, "
        f"got {type(item).__name__}"
    )


class ReIDExtractor:
    """Embed person images with the network of a model folder, in batches.

    Args:
        model_dir: A model folder, or a Hugging Face Hub repo id (see
            :meth:`~stadb_reid.model.STADBNet.from_pretrained`).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: Images per forward pass.
        precision: ``"auto"`` (the fastest path with parity on this machine), ``"fp32"``, ``"bf16"``
            or ``"onnx"`` (ONNX Runtime, CPU); see :mod:`stadb_reid.inference.precision`.
        flip: Average each embedding with that of the mirrored image (as ``eval.flip``).
        expected_images: How many images this extractor is about to embed, if known: ``auto`` picks a
            path whose setup takes long (``onnx`` on a CPU without native bf16) only for a large run.

    Attributes:
        network: The eval-mode network, on ``device``.
        precision: The path that runs (never ``auto``), and ``precision_reason`` why ``auto`` chose it.
        config: The folder's ``config.yaml``.
        preprocess: The per-image part of the preprocessing (resize, uint8 tensor).

    Raises:
        ModelFolderError: The folder is missing, incomplete or does not fit its config.
        ConfigError: ``device`` or ``precision`` is unusable here.

    Examples:
        >>> import shutil, tempfile
        >>> from pathlib import Path
        >>> from stadb_reid.config import config_to_dict, load_config
        >>> from stadb_reid.model.folder import save_model_folder
        >>> from stadb_reid.model.folder import model_folder_config
        >>> run = load_config([], {"model.backbone": "resnet18", "data.height": 64, "data.width": 32})
        >>> network = STADBNet(4, backbone="resnet18")
        >>> described = model_folder_config(network, config_to_dict(run), num_classes=4,
        ...                                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        >>> folder = save_model_folder(Path(tempfile.mkdtemp()) / "model", network, described)
        >>> extractor = ReIDExtractor(folder, batch_size=2, precision="fp32")
        >>> crops = [np.zeros((100, 40, 3), np.uint8), Image.new("RGB", (30, 70))]
        >>> embeddings = extractor(crops)
        >>> embeddings.shape, embeddings.dtype, bool(np.allclose(np.linalg.norm(embeddings, axis=1), 1))
        ((2, 1536), dtype('float32'), True)
        >>> shutil.rmtree(folder.parent)
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        precision: Precision | str = "auto",
        flip: bool = False,
        expected_images: int | None = None,
    ) -> None:
        network, config = load_model_folder(STADBNet, model_dir)
        self._setup(
            network,
            config,
            device=device,
            batch_size=batch_size,
            precision=precision,
            flip=flip,
            expected_images=expected_images,
        )

    @classmethod
    def from_network(
        cls,
        network: STADBNet,
        config: ModelFolderConfig,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        precision: Precision | str = "auto",
        flip: bool = False,
        expected_images: int | None = None,
    ) -> ReIDExtractor:
        """An extractor of a network in memory, e.g. rebuilt from a checkpoint, described by ``config``."""
        extractor = cls.__new__(cls)
        extractor._setup(
            network,
            config,
            device=device,
            batch_size=batch_size,
            precision=precision,
            flip=flip,
            expected_images=expected_images,
        )
        return extractor

    def _setup(
        self,
        network: STADBNet,
        config: ModelFolderConfig,
        *,
        device: str | torch.device,
        batch_size: int,
        precision: Precision | str,
        flip: bool,
        expected_images: int | None,
    ) -> None:
        check_positive_int(batch_size, "batch_size")
        if expected_images is not None:
            check_non_negative_int(expected_images, "expected_images")
        self.device = _device(device)
        self.network = network.eval().to(self.device)
        self.config = config
        self.batch_size = batch_size
        self.flip = flip
        self.preprocess = Preprocess(config.height, config.width)
        self._mean = torch.tensor(config.mean, device=self.device).view(-1, 1, 1)
        self._std = torch.tensor(config.std, device=self.device).view(-1, 1, 1)
        runtime = build_runtime(
            self.network,
            precision,
            self.device,
            config.height,
            config.width,
            probe=self._probe,
            expected_images=expected_images,
        )
        self.precision, self.precision_reason, self._run = runtime.name, runtime.reason, runtime.run

    def _probe(self) -> Tensor:
        """A normalised batch of synthetic people at the model's input size (``auto``'s parity check)."""
        people = [render_person(pid, pid % 2, image_seed=pid) for pid in range(8)]  # PIL, 128 x 64
        return self._normalised(torch.stack([self._single(person) for person in people]))

    def _normalised(self, batch: Tensor) -> Tensor:
        return (batch.to(self.device, torch.float32) - self._mean) / self._std

    @property
    def precision_description(self) -> str:
        """One line naming the precision that runs and, for ``auto``, why it was chosen."""
        reason = f" (auto: {self.precision_reason})" if self.precision_reason else ""
        return f"precision {self.precision}{reason}"

    @property
    def embedding_dim(self) -> int:
        """Size of an embedding."""
        return self.config.embedding_dim

    @cached_property
    def fingerprint(self) -> str:
        """16 hex digits identifying the embeddings this extractor's model gives (weights and config).

        A checkpoint and the folder exported from it share it. Extraction options (``flip``, ``precision``)
        are not part of it.
        """
        return model_fingerprint(self.network, self.config)

    @overload
    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        normalize: bool = ...,
        as_tensor: Literal[False] = ...,
    ) -> npt.NDArray[np.float32]: ...

    @overload
    def __call__(
        self, images: ImageInput | Sequence[ImageInput], *, normalize: bool = ..., as_tensor: Literal[True]
    ) -> Tensor: ...

    @overload
    def __call__(
        self, images: ImageInput | Sequence[ImageInput], *, normalize: bool = ..., as_tensor: bool = ...
    ) -> npt.NDArray[np.float32] | Tensor: ...

    def __call__(
        self, images: ImageInput | Sequence[ImageInput], *, normalize: bool = True, as_tensor: bool = False
    ) -> npt.NDArray[np.float32] | Tensor:
        """Embed one image or many.

        Args:
            images: One :data:`ImageInput` or a sequence of them (kinds may mix). Arrays are RGB:
                convert OpenCV's BGR frames with ``frame[..., ::-1]``. Tensors are unnormalised RGB,
                float in [0, 1] or uint8; another size than the model's is resized (bilinear,
                antialiased).
            normalize: L2-normalise each embedding (then Euclidean and cosine distances rank alike).
            as_tensor: Return a CPU ``torch.Tensor`` instead of a NumPy array.

        Returns:
            ``(N, embedding_dim)`` float32, one row per image in order; ``N = 1`` for a single image,
            ``N = 0`` for an empty sequence.

        Raises:
            UnreadableImageError: A path cannot be read as an image (names the path).
            ValueError: An array or tensor of the wrong shape, type or value range.
            TypeError: An item of another kind.
        """
        rows = [self._embed(batch) for batch in self._batches(images)]
        # Concatenated outside inference mode: a normal tensor, usable in autograd-enabled code.
        embeddings = torch.cat(rows) if rows else torch.empty(0, self.embedding_dim)
        if normalize:
            embeddings = F.normalize(embeddings, dim=1)
        return embeddings if as_tensor else embeddings.numpy()

    def _batches(self, images: ImageInput | Sequence[ImageInput]) -> Iterator[Tensor]:
        """Float ``(n, 3, height, width)`` batches in [0, 1] of at most ``batch_size`` images."""
        if isinstance(images, Tensor) and images.dim() == 4:
            yield from (self._resized(batch) for batch in images.split(self.batch_size))
            return
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, Sequence) or isinstance(images, str):
            images = [images]
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            yield torch.stack([self._single(item) for item in chunk])

    def _single(self, item: ImageInput) -> Tensor:
        if isinstance(item, Tensor):
            if item.dim() != 3:
                raise ValueError(f"an image tensor must be (3, H, W), got shape {tuple(item.shape)}")
            return self._resized(item.unsqueeze(0))[0]
        return self._resized(self.preprocess(_image(item)).unsqueeze(0))[0]

    def _resized(self, batch: Tensor) -> Tensor:
        """A float batch in [0, 1] at the model's input size, from a float or uint8 ``(N, 3, H, W)`` one."""
        if (
            batch.dim() != 4
            or batch.shape[1] != 3
            or not (batch.is_floating_point() or batch.dtype == torch.uint8)
        ):
            raise ValueError(
                "an image batch must be a float or uint8 (N, 3, H, W) tensor, got "
                f"{batch.dtype} {tuple(batch.shape)}"
            )
        if batch.dtype == torch.uint8:  # the same scaling per image or per batch: identical values
            batch = TF.to_dtype(batch, torch.float32, scale=True)
        elif batch.numel() and (batch.min() < 0 or batch.max() > 1):
            raise ValueError(
                "image tensors must hold unnormalised RGB in [0, 1] (the extractor normalises), got "
                f"values in [{batch.min().item():.3g}, {batch.max().item():.3g}]"
            )
        if tuple(batch.shape[-2:]) == self.preprocess.size:
            return batch
        return F.interpolate(batch.float(), size=self.preprocess.size, mode="bilinear", antialias=True)

    def _embed(self, batch: Tensor) -> Tensor:
        x = self._normalised(batch)
        embeddings = self._run(x)
        if self.flip:
            embeddings = (embeddings + self._run(x.flip(-1))) / 2
        return embeddings.cpu()
