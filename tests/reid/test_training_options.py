"""Mixed precision, channels_last and torch.compile in the training step."""

from collections.abc import Callable

import pytest
import torch
from torch import nn

from stadb_reid.engine.distributed import DistributedContext
from stadb_reid.engine.precision import Precision
from stadb_reid.engine.step import TrainStep
from stadb_reid.errors import ConfigError
from stadb_reid.model import STADBNet

SINGLE_PROCESS = DistributedContext(0, 1, torch.device("cpu"))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 64, 32, generator=generator), torch.arange(4).repeat_interleave(2)


def run_steps(
    amp: str,
    *,
    channels_last: bool = False,
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
    steps: int = 2,
) -> tuple[list[float], STADBNet]:
    torch.manual_seed(0)
    model = STADBNet(8, backbone="resnet18", pretrained=False, seed=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    step = TrainStep(
        wrap(model),
        optimizer,
        precision=Precision(amp, "cpu"),
        context=SINGLE_PROCESS,
        channels_last=channels_last,
    )
    images, pids = batch()
    return [step(images, pids).item() for _ in range(steps)], model


def first_convolution(model: STADBNet) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    ("mode", "device", "message"),
    [("fp16", "cpu", "fp16 needs CUDA"), ("half", "cpu", "amp must be one of off, bf16, fp16")],
)
def test_precision_errors_name_the_option(mode: str, device: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Precision(mode, device)


@pytest.mark.parametrize(
    ("capabilities", "mode", "device", "warns"),
    [
        ({"architecture": "x86_64", "avx2": True}, "bf16", "cpu", True),
        ({"architecture": "x86_64", "avx512_bf16": True}, "bf16", "cpu", False),
        ({"architecture": "x86_64", "amx_bf16": True}, "bf16", "cpu", False),
        ({"architecture": "x86_64", "avx2": True}, "off", "cpu", False),
        ({"architecture": "x86_64", "avx2": True}, "bf16", "cuda", False),
        ({"architecture": "arm64", "bf16": True}, "bf16", "cpu", False),  # not judged off x86
    ],
)
def test_bf16_on_a_cpu_that_emulates_it_is_flagged(
    monkeypatch: pytest.MonkeyPatch, capabilities: dict[str, object], mode: str, device: str, warns: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    warning = Precision(mode, device).warning
    assert (warning is not None) == warns
    assert warning is None or "--amp off" in warning


def test_bf16_and_channels_last_train_close_to_fp32() -> None:
    fp32, reference = run_steps("off")
    bf16, model = run_steps("bf16", channels_last=True)
    assert bf16 == pytest.approx(fp32, rel=0.05)
    conv = first_convolution(model).weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert conv.dtype == torch.float32, "autocast keeps fp32 master weights"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(conv, first_convolution(reference).weight), "bf16 gradients differ from fp32 ones"


def test_bf16_autocast_reaches_the_convolutions() -> None:
    seen: list[torch.dtype] = []
    torch.manual_seed(0)
    model = STADBNet(8, backbone="resnet18", pretrained=False, seed=0)
    first_convolution(model).register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    step = TrainStep(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        precision=Precision("bf16", "cpu"),
        context=SINGLE_PROCESS,
    )
    step(*batch())
    assert seen == [torch.bfloat16]


def test_compiled_step_matches_eager() -> None:
    eager, _ = run_steps("off")
    try:
        compiled, _ = run_steps("off", wrap=lambda m: torch.compile(m))  # type: ignore[arg-type,return-value]
    finally:
        torch._dynamo.reset()  # leave no compiled code behind for other tests
    assert compiled == pytest.approx(eager, rel=1e-4)
