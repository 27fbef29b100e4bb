"""A diverging run stops with its last good checkpoint intact; an earlier run is never replaced unasked."""

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stadb_reid.config import load_config
from stadb_reid.engine import load_checkpoint, train
from stadb_reid.engine import step as step_module
from stadb_reid.engine.distributed import DistributedContext
from stadb_reid.engine.precision import Precision
from stadb_reid.engine.preflight import prepare_output_dir
from stadb_reid.engine.run_folder import RUN_FILES
from stadb_reid.engine.step import TrainStep
from stadb_reid.errors import ConfigError, TrainingDivergedError
from stadb_reid.model import TrainOutput

from .test_cli_errors import TINY, assert_one_line_error, run_cli, train_arguments

SETTINGS = [
    "data.height=32",
    "data.width=16",
    "data.num_identities=2",
    "data.num_instances=2",
    "data.num_workers=0",
    "model.backbone=resnet10t",
    "model.variant=global",
    "model.pretrained=false",
    "optim.warmup_epochs=1",
    TINY,
]


def tiny_config(tmp_path: Path, epochs: int, *settings: str) -> Any:
    overrides = {
        "data.dataset": "synthetic",
        "data.root": str(tmp_path / "synthetic"),
        "output_dir": str(tmp_path / "run"),
        "optim.epochs": epochs,
    }
    return load_config([], overrides, [*SETTINGS, *settings])


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss, calls = step_module.reid_loss, [0]

    def loss_turning_nan_in_the_second_epoch(*args: Any) -> torch.Tensor:
        calls[0] += 1
        loss = real_loss(*args)
        return loss * math.nan if calls[0] > steps_per_epoch else loss

    steps_per_epoch = 3  # the tiny dataset at P = 2, K = 2
    monkeypatch.setattr(step_module, "reid_loss", loss_turning_nan_in_the_second_epoch)
    config = tiny_config(tmp_path, epochs=3)
    with pytest.raises(TrainingDivergedError) as diverged:
        train(config, progress=False, log=lambda _: None)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert str(diverged.value).startswith("training diverged at epoch 2, step 1/3: the loss is nan;")
    assert f"the last checkpoint, with finite weights, is {checkpoint} (to resume at epoch 2, step 0)" in str(
        diverged.value
    )
    state = load_checkpoint(checkpoint)
    assert state["resume_at"] == {"epoch": 2, "step": 0, "loss_sum": 0.0}
    assert all(t.isfinite().all() for t in state["model"].values() if t.is_floating_point())
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_cli_reports_divergence_in_one_line_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = train_arguments(tmp_path, *(x for s in SETTINGS for x in ("--set", s)))
    arguments += ["--epochs", "4", "--set", "optim.base_lr=1e12"]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, "training diverged at epoch", expected_code=1)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    if checkpoint.exists():  # whatever was saved holds finite weights only
        state = load_checkpoint(checkpoint)
        assert all(t.isfinite().all() for t in state["model"].values() if t.is_floating_point())


def test_non_finite_weights_are_never_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step, calls = TrainStep.__call__, [0]

    def step_that_corrupts_a_weight(
        self: TrainStep, images: torch.Tensor, pids: torch.Tensor
    ) -> torch.Tensor:
        loss = real_step(self, images, pids)
        calls[0] += 1
        if calls[0] == 3:  # the epoch's last step, right before its checkpoint
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = math.inf
        return loss

    monkeypatch.setattr(TrainStep, "__call__", step_that_corrupts_a_weight)
    with pytest.raises(TrainingDivergedError, match=r"not saving a checkpoint: .* is not finite"):
        train(tiny_config(tmp_path, epochs=1), progress=False, log=lambda _: None)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, images: torch.Tensor) -> TrainOutput:
        features = self.linear(images.flatten(1))
        return TrainOutput([features], [features])


def test_a_non_finite_gradient_is_caught_before_the_optimiser_steps() -> None:
    model = _TwoHeads()
    model.linear.weight.register_hook(lambda grad: grad * math.inf)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    step = TrainStep(
        model,
        optimizer,
        precision=Precision("off", "cpu"),
        context=DistributedContext(rank=0, world_size=1, device=torch.device("cpu")),
    )
    with pytest.raises(TrainingDivergedError, match=r"the gradient of linear\.weight is not finite"):
        step(torch.randn(4, 1, 2, 2), torch.tensor([0, 0, 1, 1]))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def make_run(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "metrics.json", "curves.png"):
        (folder / name).write_text("earlier run")
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events.out.tfevents.1.host").write_text("events")
    (folder / "notes.txt").write_text("the user's")


def test_an_earlier_run_needs_resume_or_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(tmp_path / "run")
    code, _, err = run_cli(train_arguments(tmp_path), monkeypatch, capsys)
    assert_one_line_error(code, err, "holds an earlier run (checkpoint.pt, checkpoint.prev.pt, metrics.json")
    assert (tmp_path / "run" / "checkpoint.pt").read_text() == "earlier run"
    assert not (tmp_path / "synthetic").exists(), "refused before the dataset was built"


def test_overwrite_removes_only_the_run_files(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    prepare_output_dir(tmp_path / "run", resume=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]
    assert set(RUN_FILES) >= {"checkpoint.pt", "checkpoint.prev.pt", "metrics.json", "curves.png"}


def test_resume_keeps_the_run_and_both_flags_together_are_refused(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    prepare_output_dir(tmp_path / "run", resume=True, overwrite=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_text() == "earlier run"
    with pytest.raises(ConfigError, match="choose --resume or --overwrite, not both"):
        train(tiny_config(tmp_path, epochs=1), resume=True, overwrite=True, progress=False)


@pytest.mark.parametrize("command", ["export", "extract", "visualize"])
def test_commands_do_not_replace_an_existing_output_unasked(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    out = {
        "export": tmp_path / "model.onnx",
        "extract": tmp_path / "f.npy",
        "visualize": tmp_path / "cmc.png",
    }
    out[command].write_text("mine")
    arguments = {
        "export": ["export", "--checkpoint", str(checkpoint), "--out", str(out[command])],
        "extract": [
            "extract",
            "--checkpoint",
            str(checkpoint),
            "--images",
            str(tmp_path),
            "--out",
            str(out[command]),
        ],
        "visualize": ["visualize", "--checkpoint", str(checkpoint), "--output-dir", str(tmp_path)],
    }[command]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, f"{out[command]} exists; pass --overwrite to replace it")
    assert out[command].read_text() == "mine"
