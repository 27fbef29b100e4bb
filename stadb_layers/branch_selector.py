r"""Random branch selection.

From "STADB: A Self-Thresholding Attention Guided ADB Network for Person Re-identification"
(Jiang, Wang, Wang, Zheng): in each training iteration either the drop branch (probability
:math:`\rho = 0.25`) or the attention branch runs, for the whole batch.
"""

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .checks import check_int, check_probability

__all__ = ["RandomBranchSelector"]


def _seed_shared_by_all_ranks(seed: int | None) -> int:
    """Return ``seed`` (or a fresh one), replaced by rank 0's value when ``torch.distributed`` is running."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    if dist.is_available() and dist.is_initialized():
        shared = [seed]
        dist.broadcast_object_list(shared, src=0)
        seed = int(shared[0])
    return seed


class RandomBranchSelector(nn.Module):
    r"""Run one randomly drawn branch per training step, and a fixed branch in eval mode.

    In training mode each ``forward`` draws branch :math:`i` with probability :math:`p_i` and runs it on
    the whole batch. In eval mode ``eval_branch`` always runs. STADB uses two branches, the
    self-thresholding drop (:math:`\rho = 0.25`) and the attention module (:math:`1 - \rho`), with the
    attention branch at test time.

    The draws come from the selector's own CPU :class:`torch.Generator`, so they neither touch the global
    RNG nor synchronise with a GPU, and a given seed always yields the same sequence. The generator
    state is part of :meth:`state_dict` (as extra state), so resuming from a checkpoint continues the
    sequence exactly.

    Distributed training: when ``torch.distributed`` is initialised at construction, rank 0's seed is
    broadcast, so every rank draws the same branch at the same step (each rank must call ``forward``
    equally often, as DDP requires anyway). Wrap the model with
    ``DistributedDataParallel(model, find_unused_parameters=True)``: the branches that were not drawn
    get no gradient in that step, which DDP otherwise reports as an error. ``static_graph=True`` does
    not apply, because the graph changes from step to step.

    ``torch.compile`` works with ``fullgraph=True`` in eval mode. In training mode the random draw is a
    graph break (a data-dependent choice between stateful branches, which ``torch.cond`` cannot express
    while BatchNorm updates its running statistics), so compile it with the default ``fullgraph=False``.

    Args:
        branches: Modules that map a tensor to a tensor, at least one.
        probs: Probability of each branch, non-negative, summing to 1.
        eval_branch: Index of the branch that runs in eval mode.
        seed: Seed of the selector's generator. ``None`` draws one from the global torch RNG.

    Attributes:
        last_branch: Index of the branch run by the latest ``forward``, for logging; -1 before the
            first call.

    Examples:
        >>> selector = RandomBranchSelector([nn.Identity(), nn.ReLU()], probs=[0.25, 0.75],
        ...                                 eval_branch=1, seed=0)
        >>> y = selector(torch.randn(2, 3))
        >>> selector.last_branch in (0, 1)
        True
        >>> _ = selector.eval()(torch.randn(2, 3))
        >>> selector.last_branch
        1
    """

    last_branch: int

    def __init__(
        self,
        branches: Sequence[nn.Module],
        probs: Sequence[float],
        eval_branch: int,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if len(branches) == 0:
            raise ValueError("branches must hold at least one module")
        if len(probs) != len(branches):
            raise ValueError(f"probs must have one entry per branch ({len(branches)}), got {len(probs)}")
        probs = [check_probability(p, "probs") for p in probs]
        if not math.isclose(math.fsum(probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"probs must sum to 1, got {math.fsum(probs)}")
        eval_branch = check_int(eval_branch, "eval_branch", 0, len(branches) - 1)
        self.branches = nn.ModuleList(branches)
        self.probs = tuple(probs)
        self.eval_branch = eval_branch
        self.seed = _seed_shared_by_all_ranks(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._cumulative_probs = list(itertools.accumulate(probs))
        self.last_branch = -1

    @torch.jit.unused
    @torch.compiler.disable
    def draw(self) -> int:
        """Draw a branch index from the selector's generator (this advances it)."""
        u = torch.rand((), generator=self.generator).item()
        return min(bisect.bisect_right(self._cumulative_probs, u), len(self.branches) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the drawn branch in training mode, ``eval_branch`` in eval mode."""
        index = self.draw() if self.training else self.eval_branch
        self.last_branch = index
        out = x
        for i, branch in enumerate(self.branches):
            if i == index:
                out = branch(x)
        return out

    def get_extra_state(self) -> dict[str, Any]:
        """Generator state and seed, so a checkpoint resumes the sequence of draws."""
        return {"seed": self.seed, "generator_state": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the state written by :meth:`get_extra_state`."""
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator_state"])

    def extra_repr(self) -> str:
        """Branch probabilities, eval branch and seed."""
        return f"probs={self.probs}, eval_branch={self.eval_branch}, seed={self.seed}"
