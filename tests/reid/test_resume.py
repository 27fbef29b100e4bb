"""Crash safety: SIGKILL mid-epoch and Ctrl-C, then ``--resume``, against an uninterrupted run.

Every run is a ``python -m stadb_reid train`` subprocess in deterministic CPU mode, so "exact" means
bit-identical weights and identical metrics.
"""

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from stadb_reid.data import generate_synthetic_reid
from stadb_reid.engine import load_checkpoint

EPOCHS = 3


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_reid(
        root, num_train_identities=12, num_test_identities=6, images_per_identity_per_camera=2
    )
    return root


def train_command(data_root: Path, output_dir: Path, *extra: str, workers: int = 0) -> list[str]:
    return [
        sys.executable, "-m", "stadb_reid", "train", "--recipe", "defaults",
        "--dataset", "synthetic", "--data-root", str(data_root), "--output-dir", str(output_dir),
        "--epochs", str(EPOCHS), "--height", "64", "--width", "32",
        "--num-identities", "4", "--num-instances", "2", "--no-pretrained", "--device", "cpu",
        "--deterministic",
        "--set", "model.backbone=resnet18", "--set", f"data.num_workers={workers}",
        "--set", "optim.warmup_epochs=1", "--set", "eval.every=2",
        "--set", "data.options={num_train_identities: 12, num_test_identities: 6,"
        " images_per_identity_per_camera: 2}",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(
        train_command(data_root, output_dir, "--no-progress"), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return output_dir


def interrupt_during_second_epoch(command: list[str], signum: int) -> subprocess.CompletedProcess[str]:
    """Run ``command`` and send ``signum`` once the progress bar is a step or two into epoch 2."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen: list[str] = []

    def watch() -> None:
        assert process.stderr is not None
        text = ""
        while chunk := process.stderr.read(1):
            text += chunk
            progress = re.findall(r"(\d+)/(\d+) \[", text[-200:])
            if progress:
                done, total = map(int, progress[-1])
                if done >= total // EPOCHS + 2 and process.poll() is None and not seen:
                    seen.append(f"{done}/{total}")
                    process.send_signal(signum)
        seen.append(text)

    watcher = threading.Thread(target=watch)
    watcher.start()
    # Not communicate(): it would read stderr too, racing the watcher for the last lines.
    assert process.stdout is not None
    stdout = process.stdout.read()
    process.wait(timeout=600)
    watcher.join()
    assert len(seen) == 2, f"the run ended before reaching epoch 2: {seen[-1][-2000:]}"
    return subprocess.CompletedProcess(command, process.returncode, stdout, seen[-1])


def assert_same_result(run: Path, reference: Path) -> None:
    final = load_checkpoint(run / "checkpoint.pt")["model"]
    expected = load_checkpoint(reference / "checkpoint.pt")["model"]
    assert final.keys() == expected.keys()
    differing = [
        k
        for k in expected
        if isinstance(expected[k], torch.Tensor) and not torch.equal(final[k], expected[k])
    ]
    assert not differing, f"weights differ from the uninterrupted run: {differing[:5]}"
    metrics, reference_metrics = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    for key in ("rank1", "rank5", "mAP", "mINP", "history"):
        assert metrics[key] == reference_metrics[key], key


def test_sigkill_mid_epoch_then_resume_is_exact(data_root: Path, uninterrupted: Path, tmp_path: Path) -> None:
    # Two loader workers here and none in the reference: augmentations must not depend on workers.
    command = train_command(data_root, tmp_path, workers=2)
    killed = interrupt_during_second_epoch(command, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    # At most the unfinished epoch is lost: the checkpoint holds epoch 1 and points at epoch 2's start.
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["completed_epochs"] == 1 and state["resume_at"] == {"epoch": 2, "step": 0, "loss_sum": 0.0}
    assert not list(tmp_path.glob(".*.tmp")), "the atomic write leaves no temporary file behind"

    resumed = subprocess.run(
        [*command, "--resume", "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "epoch 2, step 0" in resumed.stdout
    assert_same_result(tmp_path, uninterrupted)


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(
    data_root: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    command = train_command(data_root, tmp_path)
    stopped = interrupt_during_second_epoch(command, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "interrupted: stopped at epoch 2, step" in stopped.stderr and "--resume" in stopped.stderr
    assert re.search(r"epoch 2/3: .*<.*loss=\d+\.\d+, lr=\d\.\de-\d+", stopped.stderr), (
        "progress: ETA, loss, lr"
    )
    position = load_checkpoint(tmp_path / "checkpoint.pt")["resume_at"]
    assert position["epoch"] == 2 and position["step"] >= 1

    resumed = subprocess.run(
        [*command, "--resume", "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch 2, step {position['step']}" in resumed.stdout
    assert_same_result(tmp_path, uninterrupted)


def test_resume_uses_the_previous_checkpoint_when_the_latest_is_damaged(
    data_root: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (tmp_path / name).write_bytes((uninterrupted / name).read_bytes())
    latest = tmp_path / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    command = train_command(data_root, tmp_path, "--resume", "--no-progress", "--epochs", str(EPOCHS + 1))
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {latest} is truncated" in resumed.stdout
    assert f"checkpoint.prev.pt: epoch {EPOCHS}, step 0" in resumed.stdout
    assert load_checkpoint(latest)["completed_epochs"] == EPOCHS + 1


def test_resume_with_another_model_is_a_one_line_error(
    uninterrupted: Path, tmp_path: Path, data_root: Path
) -> None:
    (tmp_path / "checkpoint.pt").write_bytes((uninterrupted / "checkpoint.pt").read_bytes())
    command = train_command(data_root, tmp_path, "--resume", "--no-progress", "--variant", "global")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert f"error: {tmp_path / 'checkpoint.pt'} does not fit this config's model" in result.stderr
    assert "Traceback" not in result.stderr
