"""Two torchrun agents on localhost as two nodes (c10d rendezvous, gloo): the same weights as one node
with two processes, and a lost node whose run continues bit-exactly (``--resume``, elastic restarts).

Every run trains in deterministic CPU mode, so the comparisons are exact: a node differs from a
process only in how the ranks find each other, and gloo sums two ranks' gradients as a + b on both,
the same on one node or two, so bit-identical weights are the right bar (no tolerance).
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from stadb_reid.data import generate_synthetic_reid
from stadb_reid.engine import load_checkpoint, train
from stadb_reid.engine.elastic import check_restart_store
from stadb_reid.errors import ConfigError

from .test_distributed import free_port
from .test_run_guards import tiny_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds workers through /proc")

EPOCHS = 3
# Every wait is bounded, so that a stuck agent fails its test instead of stalling the suite.
START_TIMEOUT = 300  # until the first checkpoint (the agents start, rendezvous and train an epoch)
RUN_TIMEOUT = 420  # until every agent of a run has exited
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


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


class Agents:
    """The torchrun agents of a test, each with its log in ``logs``; :meth:`kill` ends those left."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def launch(self, command: list[str], name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start one agent, logging to ``name.log``."""
        with (self.logs / f"{name}.log").open("wb") as log:
            agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment(**env))
        self.started.append(agent)
        return agent

    def start(self, command: list[str], port: int, **env: str) -> list[subprocess.Popen[bytes]]:
        """Start one agent per node, the first (the one hosting the rendezvous store) listening first."""
        nodes = [self.launch(command, "node0", **env)]
        self.wait_until(lambda: listening(port), nodes, "the first agent's rendezvous store")
        return [*nodes, self.launch(command, "node1", **env)]

    def wait_until(
        self, condition: Callable[[], bool], nodes: list[subprocess.Popen[bytes]], what: str
    ) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            assert all(node.poll() is None for node in nodes), f"an agent exited before {what}\n{self.log()}"
            assert time.monotonic() < deadline, f"no {what} after {START_TIMEOUT} s\n{self.log()}"
            time.sleep(0.05)

    def finish(self, nodes: list[subprocess.Popen[bytes]], timeout: float = RUN_TIMEOUT) -> list[int]:
        """The agents' exit codes, once all have exited (within ``timeout`` seconds in all)."""
        deadline = time.monotonic() + timeout
        try:
            return [node.wait(timeout=max(deadline - time.monotonic(), 0)) for node in nodes]
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the agents still run after {timeout} s\n{self.log()}") from None

    def log(self) -> str:
        """The end of every node's log, for failure messages."""
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("*.log"))
        )

    def kill(self) -> None:
        """SIGKILL every agent still running and its workers (stopped first, so that none restarts)."""
        for agent in self.started:
            if agent.poll() is None:
                agent.send_signal(signal.SIGSTOP)
                for pid in [*descendants(agent.pid), agent.pid]:
                    with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                        os.kill(pid, signal.SIGKILL)
                agent.wait(timeout=60)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    started = Agents(tmp_path)
    try:
        yield started
    finally:
        started.kill()


def two_nodes(port: int, run_id: str, *options: str) -> list[str]:
    endpoint = f"--rdzv-endpoint=127.0.0.1:{port}"
    return torchrun(
        "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", endpoint, f"--rdzv-id={run_id}", *options
    )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


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


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return [*found, *(grandchild for child in found for grandchild in descendants(child))]


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
    output, logs = tmp_path_factory.mktemp("one_node"), tmp_path_factory.mktemp("one_node_log")
    command = [
        *torchrun("--nproc_per_node=2", "--master-port", str(free_port())),
        *train_arguments(data_root, output),
    ]
    agents = Agents(logs)
    try:
        assert agents.finish([agents.launch(command, "one_node")]) == [0], agents.log()
    finally:
        agents.kill()
    return output


def test_two_nodes_train_the_same_weights_as_one_node(
    data_root: Path, one_node: Path, tmp_path: Path, agents: Agents
) -> None:
    port, output = free_port(), tmp_path / "run"
    nodes = agents.start([*two_nodes(port, "same"), *train_arguments(data_root, output)], port)
    assert agents.finish(nodes) == [0, 0], agents.log()
    assert_same_run(output, one_node)


def test_a_lost_node_leaves_a_checkpoint_that_resume_continues_exactly(
    data_root: Path, one_node: Path, tmp_path: Path, agents: Agents
) -> None:
    port, output, run_id = free_port(), tmp_path / "run", uuid.uuid4().hex
    nodes = agents.start([*two_nodes(port, run_id), *train_arguments(data_root, output)], port)
    agents.wait_until((output / "checkpoint.pt").exists, nodes, "checkpoint")
    lose_node(nodes[1])
    assert agents.finish(nodes[:1]) != [0], "the surviving node stops (gloo loses its peer)"
    state = load_checkpoint(output / "checkpoint.pt")
    assert 1 <= state["completed_epochs"] < EPOCHS and not (output / "metrics.json").exists()

    port = free_port()
    resumed = [*two_nodes(port, uuid.uuid4().hex), *train_arguments(data_root, output), "--resume"]
    assert agents.finish(agents.start(resumed, port)) == [0, 0], agents.log()
    assert (
        f"resuming from {output / 'checkpoint.pt'}"
        in (tmp_path / "node0.log").read_text() + (tmp_path / "node1.log").read_text()
    )
    assert_same_run(output, one_node)


# torchrun's agent keeps the store of the first attempt (torch 2.5 and later), where the restarted
# workers could read each other's old gloo addresses: refused, or waiting for ever (it hung once).
# TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 gives every attempt a fresh store; the trainer asks for it.
FRESH_STORE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def test_an_elastic_restart_continues_its_own_checkpoint_exactly(
    data_root: Path, one_node: Path, tmp_path: Path, agents: Agents
) -> None:
    # No --resume: a worker crashes after epoch 1; both agents restart their workers (torchrun
    # --max-restarts), which continue the checkpoint this job (its rendezvous id) wrote.
    port, output = free_port(), tmp_path / "run"
    command = [*two_nodes(port, uuid.uuid4().hex, "--max-restarts=1"), *train_arguments(data_root, output)]
    nodes = agents.start(command, port, **FRESH_STORE)
    agents.wait_until((output / "checkpoint.pt").exists, nodes, "checkpoint")
    for worker in children(nodes[1].pid):
        os.kill(worker, signal.SIGKILL)
    assert agents.finish(nodes) == [0, 0], agents.log()
    logs = (tmp_path / "node0.log").read_text() + (tmp_path / "node1.log").read_text()
    assert f"this torchrun job wrote {output / 'checkpoint.pt'}: continuing it" in logs, agents.log()
    assert_same_run(output, one_node)


TORCHRUN_ENVIRONMENTS = [
    ({"WORLD_SIZE": "2", "TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}, True),
    ({"WORLD_SIZE": "2", "TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_USE_AGENT_STORE": "False"}, False),
    ({"WORLD_SIZE": "2", "TORCHELASTIC_MAX_RESTARTS": "0", "TORCHELASTIC_USE_AGENT_STORE": "True"}, False),
    ({"WORLD_SIZE": "1", "TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_USE_AGENT_STORE": "True"}, False),
    ({}, False),
]


@pytest.mark.parametrize(("variables", "refused"), TORCHRUN_ENVIRONMENTS)
def test_restarts_through_the_first_attempts_store_are_refused(
    variables: dict[str, str], refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WORLD_SIZE", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if refused:
        with pytest.raises(ConfigError, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
            check_restart_store()
    else:
        check_restart_store()


def test_train_refuses_restarts_through_the_first_attempts_store_before_joining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No MASTER_* variables: had train() tried to join the process group, that would fail differently.
    for name, value in TORCHRUN_ENVIRONMENTS[0][0].items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="--max-restarts"):
        train(tiny_config(tmp_path, 1), progress=False, log=lambda _: None)
