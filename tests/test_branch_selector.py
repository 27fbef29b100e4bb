import math
import socket
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stadb_layers.branch_selector import RandomBranchSelector
from stadb_layers.se import SE
from stadb_layers.threshold_drop import SelfThresholdDrop

from .layer_testing import BaseLayerTests


class AddConstant(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


def constant_selector(probs: list[float], seed: int = 0, eval_branch: int = 0) -> RandomBranchSelector:
    """Branch i adds i, so the output tells which branch ran."""
    return RandomBranchSelector(
        [AddConstant(float(i)) for i in range(len(probs))], probs, eval_branch, seed=seed
    )


def draw_sequence(selector: RandomBranchSelector, steps: int) -> list[int]:
    x = torch.zeros(3, 2)
    drawn = []
    for _ in range(steps):
        out = selector(x)
        assert torch.all(out == selector.last_branch), "the whole batch goes through one branch"
        drawn.append(selector.last_branch)
    return drawn


def test_frequencies_follow_probs() -> None:
    probs = [0.25, 0.75]
    steps = 4000
    counts = Counter(draw_sequence(constant_selector(probs, seed=1), steps))
    for index, p in enumerate(probs):
        # 5 standard deviations of a binomial count.
        assert abs(counts[index] - p * steps) < 5 * math.sqrt(steps * p * (1 - p))


@settings(deadline=None, max_examples=25)
@given(
    weights=st.lists(st.integers(0, 5), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**31),
)
def test_zero_probability_branches_never_run(weights: list[int], seed: int) -> None:
    probs = [w / sum(weights) for w in weights]
    drawn = set(draw_sequence(constant_selector(probs, seed=seed), 40))
    assert all(weights[i] > 0 for i in drawn)


def test_same_seed_same_sequence_and_independent_of_global_rng() -> None:
    first = draw_sequence(constant_selector([0.5, 0.5], seed=7), 50)
    torch.manual_seed(123)
    second = draw_sequence(constant_selector([0.5, 0.5], seed=7), 50)
    assert first == second
    assert draw_sequence(constant_selector([0.5, 0.5], seed=8), 50) != first


def test_state_dict_resumes_the_sequence() -> None:
    reference = constant_selector([0.3, 0.7], seed=3)
    draw_sequence(reference, 10)
    checkpoint = reference.state_dict()
    expected = draw_sequence(reference, 20)

    resumed = constant_selector([0.3, 0.7], seed=99)
    resumed.load_state_dict(checkpoint)
    assert resumed.seed == 3
    assert draw_sequence(resumed, 20) == expected


def test_eval_mode_runs_eval_branch_and_keeps_generator() -> None:
    selector = constant_selector([0.5, 0.25, 0.25], seed=0, eval_branch=2).eval()
    state = selector.generator.get_state()
    assert draw_sequence(selector, 5) == [2] * 5
    assert torch.equal(selector.generator.get_state(), state)


def test_last_branch_starts_unset() -> None:
    assert constant_selector([1.0]).last_branch == -1


class TestRandomBranchSelector(BaseLayerTests):
    """The generic battery (tests/layer_testing.py) on a selector between SE and the identity."""

    # Every gradcheck evaluation would draw a branch anew; eval mode runs a fixed one.
    gradcheck_training_modes = (False,)
    compile_training = False  # the training-mode draw is a graph break; see the tests below
    tolerance: ClassVar[dict[str, Any]] = {"atol": 1e-12, "rtol": 1e-12}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"branches": []}, "branches must hold at least one"),
        ({"branches": [nn.Identity()]}, "one entry per branch"),
        ({"probs": [1.2, -0.2]}, r"probs must lie in \[0.0, 1.0\]"),
        ({"probs": [0.5, 0.6]}, "probs must sum to 1"),
        ({"eval_branch": 2}, r"eval_branch must be an integer in \[0, 1\], got 2"),
        ({"eval_branch": -1}, r"eval_branch must be an integer in \[0, 1\], got -1"),
        ({"eval_branch": True}, r"eval_branch must be an integer in \[0, 1\], got True"),
    ]

    def build(self, **overrides: Any) -> nn.Module:
        kwargs: dict[str, Any] = {
            "branches": [SE(4, reduction=2), nn.Identity()],
            "probs": [0.5, 0.5],
            "eval_branch": 0,
            "seed": 0,
        }
        return RandomBranchSelector(**{**kwargs, **overrides})

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64).to(dtype),)


def test_compile_fullgraph_training_mode_breaks_the_graph() -> None:
    # The draw is data the graph cannot see; torch.cond cannot host BatchNorm's running-stat updates.
    torch._dynamo.reset()  # code compiled by earlier tests (without fullgraph) must not be reused
    selector = constant_selector([0.5, 0.5])
    with pytest.raises(Exception, match=r"(?i)graph break|skip|disable"):
        torch.compile(selector, fullgraph=True)(torch.zeros(2, 2))


def test_compile_with_graph_breaks_keeps_the_sequence() -> None:
    eager, compiled = constant_selector([0.5, 0.5], seed=5), constant_selector([0.5, 0.5], seed=5)
    compiled_forward = torch.compile(compiled)
    x = torch.zeros(3, 2)
    for _ in range(12):
        torch.testing.assert_close(compiled_forward(x), eager(x))
        assert compiled.last_branch == eager.last_branch


# --- torch.distributed -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TinySTADBHead(nn.Module):
    """conv -> {drop, conv+BN} -> pool -> linear: the branch structure of STADB in miniature."""

    def __init__(self, seed: int | None) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        attention = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
        self.selector = RandomBranchSelector([SelfThresholdDrop(), attention], [0.5, 0.5], 1, seed=seed)
        self.classifier = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.selector(torch.relu(self.stem(x)))
        return self.classifier(features.amax(dim=(2, 3)))


def ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)  # same initial weights; DDP broadcasts them anyway
        model = TinySTADBHead(seed=1000 + rank)  # different seeds: rank 0's must win
        ddp = DistributedDataParallel(model, find_unused_parameters=True)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(rank)  # each rank its own data
        drawn, losses = [], []
        for _ in range(12):
            images = torch.randn(4, 3, 8, 8, generator=generator)
            labels = torch.randint(0, 4, (4,), generator=generator)
            loss = nn.functional.cross_entropy(ddp(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            drawn.append(model.selector.last_branch)
            losses.append(loss.item())
        parameters = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(
            {"drawn": drawn, "parameters": parameters, "seed": model.selector.seed, "losses": losses},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_draw_the_same_branch_and_train(tmp_path: Path) -> None:
    world_size = 2
    mp.spawn(ddp_worker, args=(world_size, free_port(), str(tmp_path)), nprocs=world_size, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]
    assert results[0]["seed"] == results[1]["seed"] == 1000
    assert results[0]["drawn"] == results[1]["drawn"]
    assert set(results[0]["drawn"]) == {0, 1}, "both branches trained"
    # DDP kept the replicas identical although each step left one branch without gradient.
    torch.testing.assert_close(results[0]["parameters"], results[1]["parameters"], rtol=0, atol=1e-6)
    torch.manual_seed(0)
    initial = torch.cat([p.detach().flatten() for p in TinySTADBHead(seed=0).parameters()])
    assert not torch.allclose(results[0]["parameters"], initial)
    assert all(math.isfinite(loss) for r in results for loss in r["losses"])
