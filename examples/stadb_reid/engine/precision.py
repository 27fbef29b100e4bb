"""Mixed precision for the training step: bf16 autocast on CPU and CUDA, fp16 with loss scaling on CUDA."""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..config.schema import AmpMode
from ..errors import ConfigError
from ..inference.precision import cpu_has_native_bf16

__all__ = ["AMP_MODES", "Precision", "cpu_has_native_bf16"]

#: The accepted values of ``config.amp`` / ``--amp``.
AMP_MODES = tuple(mode.value for mode in AmpMode)


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs and whether the loss is scaled.

    Args:
        mode: ``"off"`` (fp32), ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"`` or ``"cuda"``.

    Raises:
        ConfigError: For an unknown mode, or fp16 on CPU (CPU autocast has no fp16 kernels worth
            using and no gradient scaler; use bf16).

    Examples:
        >>> precision = Precision("bf16", "cpu")
        >>> with precision.autocast():
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
        >>> precision.needs_grad_scaler
        False
    """

    mode: str
    device_type: str

    def __post_init__(self) -> None:
        if self.mode not in AMP_MODES:
            raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.mode!r}")
        if self.mode == "fp16" and self.device_type != "cuda":
            raise ConfigError("amp fp16 needs CUDA (it relies on a gradient scaler); use --amp bf16 on CPU")

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or ``None`` for fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode)

    @property
    def warning(self) -> str | None:
        """A line for the log when this mode will be slow here (bf16 on a CPU that emulates it)."""
        if self.mode == "bf16" and self.device_type == "cpu" and cpu_has_native_bf16() is False:
            return (
                "warning: this CPU has no AVX512-BF16 or AMX, so bf16 autocast is emulated and much "
                "slower than fp32; use --amp off"
            )
        return None

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        return self.mode == "fp16"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast to :attr:`dtype` inside the block (a no-op for ``"off"``)."""
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            yield
