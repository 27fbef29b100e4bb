"""Two torchrun agents on localhost as two nodes (c10d rendezvous, gloo): the same weights as one node
with two processes, and a lost node whose run continues bit-exactly (``--resume``, elastic restarts).

Every run trains in deterministic CPU mode, so the comparisons are exact: a node differs from a
process only in how the ranks find each other, and gloo sums two ranks' gradients as a + b on both,
the same on one node or two, so bit-identical weights are the right bar (no tolerance).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from stadb_reid.data import generate_synthetic_reid
from stadb_reid.engine import load_checkpoint

from .test_distributed import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds workers through /proc")

EPOCHS = 3
# 32 training identities at P = 2 per rank: 8 steps an epoch, time to lose a node after epoch 1.
DATA: dict[str, Any] = {
    "num_train_identities": 32,
    "num_test_identities": 2,
    "num_cameras": 2,
    "images_per_identity_per_camera": 2,
    "num_distractors": 0,
    "height": 32,
    "width": 16,
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_reid(root, **DATA)
    return root


def train_arguments(data_root: Path, output_dir: Path) -> list[str]:
    options = "{" + ", ".join(f"{key}: {value}" for key, value in DATA.items()) + "}"
    return [
        "-m", "stadb_reid", "train", "--recipe", "defaults", "--no-progress",
        "--dataset", "synthetic", "--data-root", str(data_root), "--output-dir", str(output_dir),
        "--epochs", str(EPOCHS), "--height", "32", "--width", "16",
        "--num-identities", "2", "--num-instances", "2", "--no-pretrained", "--device", "cpu",
        "--deterministic", "--set", "model.backbone=resnet10t", "--set", "data.num_workers=0",
        "--set", "optim.warmup_epochs=1", "--set", f"data.options={options}",
    ]  # fmt: skip


def torchrun(*launch: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def start_nodes(command: list[str], port: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    """Start one agent per node, the first (the one hosting the rendezvous store) listening first."""
    nodes = []
    for node in range(2):
        log = (logs / f"node{node}.log").open("wb")
        nodes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment()))
        if node == 0:
            wait_until(lambda: listening(port), nodes, "the first agent's rendezvous store")
    return nodes


def two_nodes(port: int, run_id: str, *options: str) -> list[str]:
    endpoint = f"--rdzv-endpoint=127.0.0.1:{port}"
    return torchrun(
        "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", endpoint, f"--rdzv-id={run_id}", *options
    )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(condition, nodes: list[subprocess.Popen[bytes]], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert all(node.poll() is None for node in nodes), f"an agent exited before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def finish(nodes: list[subprocess.Popen[bytes]]) -> list[int]:
    return [node.wait(timeout=600) for node in nodes]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def lose_node(agent: subprocess.Popen[bytes]) -> None:
    """SIGKILL a node: its agent and the worker it started (torchrun puts workers in their own session)."""
    workers = children(agent.pid)
    assert workers, "the agent has no worker"
    agent.kill()
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    agent.wait()


def assert_same_run(run: Path, reference: Path) -> None:
    weights = load_checkpoint(run / "checkpoint.pt")["model"]
    expected = load_checkpoint(reference / "checkpoint.pt")["model"]
    assert weights.keys() == expected.keys()
    tensors = [key for key, value in expected.items() if isinstance(value, torch.Tensor)]
    differing = [key for key in tensors if not torch.equal(weights[key], expected[key])]
    assert not differing, f"weights differ: {differing[:5]}"
    metrics, reference_metrics = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    for key in ("rank1", "rank5", "mAP", "mINP", "history"):
        assert metrics[key] == reference_metrics[key], key


@pytest.fixture(scope="module")
def one_node(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one node, two processes."""
    output = tmp_path_factory.mktemp("one_node")
    command = [
        *torchrun("--nproc_per_node=2", "--master-port", str(free_port())),
        *train_arguments(data_root, output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    return output


def test_two_nodes_train_the_same_weights_as_one_node(
    data_root: Path, one_node: Path, tmp_path: Path
) -> None:
    port, output = free_port(), tmp_path / "run"
    nodes = start_nodes([*two_nodes(port, "same"), *train_arguments(data_root, output)], port, tmp_path)
    assert finish(nodes) == [0, 0], (tmp_path / "node0.log").read_text()[-3000:]
    assert_same_run(output, one_node)


def lose_a_node_after_the_first_epoch(
    command: list[str], port: int, output: Path, logs: Path
) -> list[subprocess.Popen[bytes]]:
    nodes = start_nodes(command, port, logs)
    wait_until((output / "checkpoint.pt").exists, nodes, "checkpoint")
    lose_node(nodes[1])
    return nodes


def test_a_lost_node_leaves_a_checkpoint_that_resume_continues_exactly(
    data_root: Path, one_node: Path, tmp_path: Path
) -> None:
    port, output, run_id = free_port(), tmp_path / "run", uuid.uuid4().hex
    command = [*two_nodes(port, run_id), *train_arguments(data_root, output)]
    survivor = lose_a_node_after_the_first_epoch(command, port, output, tmp_path)[0]
    assert survivor.wait(timeout=300) != 0, "the surviving node stops (gloo loses its peer)"
    state = load_checkpoint(output / "checkpoint.pt")
    assert 1 <= state["completed_epochs"] < EPOCHS and not (output / "metrics.json").exists()

    port = free_port()
    resumed = [*two_nodes(port, uuid.uuid4().hex), *train_arguments(data_root, output), "--resume"]
    assert finish(start_nodes(resumed, port, tmp_path)) == [0, 0]
    assert (
        f"resuming from {output / 'checkpoint.pt'}"
        in (tmp_path / "node0.log").read_text() + (tmp_path / "node1.log").read_text()
    )
    assert_same_run(output, one_node)


# It passed on two engineers' runs, then hung once on a loaded 2-core machine: the restarted worker's
# gloo connectFullMesh was refused by its peer's address and both agents waited. Until that is
# understood it runs on request only (STADB_ELASTIC_TEST=1), so that it cannot stall CI.
@pytest.mark.skipif(
    os.environ.get("STADB_ELASTIC_TEST") != "1",
    reason="hung once after an elastic restart (gloo connectFullMesh refused); STADB_ELASTIC_TEST=1 runs it",
)
def test_an_elastic_restart_continues_its_own_checkpoint_exactly(
    data_root: Path, one_node: Path, tmp_path: Path
) -> None:
    # No --resume: a worker crashes after epoch 1; both agents restart their workers (torchrun
    # --max-restarts), which continue the checkpoint this job (its rendezvous id) wrote.
    port, output = free_port(), tmp_path / "run"
    command = [*two_nodes(port, uuid.uuid4().hex, "--max-restarts=1"), *train_arguments(data_root, output)]
    nodes = start_nodes(command, port, tmp_path)
    wait_until((output / "checkpoint.pt").exists, nodes, "checkpoint")
    for worker in children(nodes[1].pid):
        os.kill(worker, signal.SIGKILL)
    assert finish(nodes) == [0, 0], (tmp_path / "node0.log").read_text()[-3000:]
    logs = (tmp_path / "node0.log").read_text() + (tmp_path / "node1.log").read_text()
    assert f"this torchrun job wrote {output / 'checkpoint.pt'}: continuing it" in logs
    assert_same_run(output, one_node)
