"""Data-parallel training on 2 CPU processes (gloo) against a single process on the same global batch."""

import gc
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parameters_to_vector

from stadb_layers import RandomBranchSelector, SoftMarginBatchHardTriplet
from stadb_reid.commands import evaluate_checkpoint
from stadb_reid.engine import train
from stadb_reid.engine.distributed import DistributedContext
from stadb_reid.engine.precision import Precision
from stadb_reid.engine.step import TrainStep, reid_loss
from stadb_reid.model import STADBNet, TrainOutput

from .test_run_guards import tiny_config

WORLD_SIZE = 2
STEPS = 3
NUM_CLASSES = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_model() -> STADBNet:
    torch.manual_seed(0)
    return STADBNet(NUM_CLASSES, backbone="resnet18", pretrained=False, seed=0)


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """P x K = 4 x 2 per rank; each rank gets whole identities, as the distributed PK sampler does."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(WORLD_SIZE * 8, 3, 64, 32, generator=generator)
    pids = torch.arange(WORLD_SIZE * 4).repeat_interleave(2)
    return images, pids


def set_torchrun_environment(rank: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE)
    )


def run_rank(rank: int, port: int, results: Path) -> None:
    set_torchrun_environment(rank, port)
    context = DistributedContext.from_environment(torch.device("cpu"))
    model = make_model()
    ddp = DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    step = TrainStep(ddp, optimizer, precision=Precision("off", "cpu"), context=context)
    images, pids = global_batch()
    mine = slice(rank * 8, (rank + 1) * 8)
    losses = [step(images[mine], pids[mine]).item() for _ in range(STEPS)]
    torch.save(
        {"losses": losses, "parameters": parameters_to_vector(model.parameters())}, results / f"{rank}.pt"
    )
    context.close()


def single_process_reference() -> tuple[list[float], torch.Tensor]:
    """One process, the same global batch: forward rank by rank (BatchNorm sees what each rank sees, and
    the branch selector draws once per step), loss on the concatenation, one update."""
    model = make_model().train()
    selector = next(m for m in model.modules() if isinstance(m, RandomBranchSelector))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    cross_entropy, triplet = torch.nn.CrossEntropyLoss(), SoftMarginBatchHardTriplet()
    images, pids = global_batch()
    losses = []
    for _ in range(STEPS):
        draw_state = selector.generator.get_state()
        outputs = []
        for chunk in images.chunk(WORLD_SIZE):
            selector.generator.set_state(draw_state)
            output = model(chunk)
            assert isinstance(output, TrainOutput)
            outputs.append(output)
        merged = TrainOutput(
            [torch.cat(parts) for parts in zip(*(o.features for o in outputs), strict=True)],
            [torch.cat(parts) for parts in zip(*(o.logits for o in outputs), strict=True)],
        )
        loss = reid_loss(merged, pids, cross_entropy, triplet)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, parameters_to_vector(model.parameters()).detach()


def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.start_processes(run_rank, args=(free_port(), tmp_path), nprocs=WORLD_SIZE, start_method="spawn")
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD_SIZE)]
    assert torch.equal(ranks[0]["parameters"], ranks[1]["parameters"]), "ranks drifted apart"
    assert ranks[0]["losses"] == ranks[1]["losses"], "every rank computes the global-batch loss"
    losses, parameters = single_process_reference()
    assert ranks[0]["losses"] == pytest.approx(losses, rel=1e-5)
    torch.testing.assert_close(ranks[0]["parameters"], parameters, rtol=1e-4, atol=1e-5)


def test_torchrun_trains_and_rank_zero_alone_writes(tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node=2", "--master_port", str(free_port()),
        "-m", "stadb_reid", "train", "--recipe", "defaults",
        "--dataset", "synthetic", "--data-root", str(tmp_path / "synthetic"), "--output-dir", str(output_dir),
        "--epochs", "1", "--height", "64", "--width", "32", "--num-identities", "2", "--num-instances", "2",
        "--no-pretrained", "--device", "cpu", "--no-progress",
        "--set", "model.backbone=resnet18", "--set", "data.num_workers=0",
        "--set", "data.options={num_train_identities: 12, num_test_identities: 6,"
        " images_per_identity_per_camera: 2}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("parameters") == 1, "only rank 0 logs"
    assert not (output_dir / "checkpoint.prev.pt").exists(), "one epoch, one checkpoint write"
    metrics = json.loads((output_dir / "metrics.json").read_text())
    evaluated = evaluate_checkpoint(output_dir / "checkpoint.pt", progress=False)
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-9), key


def train_rank(rank: int, port: int, tmp_path: Path) -> None:
    set_torchrun_environment(rank, port)
    config = tiny_config(tmp_path, 1, "data.options.num_train_identities=4")  # 2 per rank
    train(config, progress=False, log=lambda _: None)
    # No collection here: what train() left behind is what interpreter exit would have to free.
    models = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    (tmp_path / f"{rank}.json").write_text(json.dumps({"models": models, "group": dist.is_initialized()}))


def test_train_frees_the_ddp_model_before_it_leaves_the_process_group(tmp_path: Path) -> None:
    # A DDP model still alive at interpreter exit aborted a torchrun rank ("terminate called without an
    # active exception") when gloo's pending work was freed during finalisation.
    mp.start_processes(train_rank, args=(free_port(), tmp_path), nprocs=WORLD_SIZE, start_method="spawn")
    for rank in range(WORLD_SIZE):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == {"models": 0, "group": False}
