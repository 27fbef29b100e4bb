"""Multi-process training under ``torchrun``: the process group, and the global batch for the loss.

``torchrun --nproc_per_node=N -m stadb_reid train ...`` starts N copies of the trainer with the
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``MASTER_*`` environment variables set; multi-node runs
use torchrun's own ``--nnodes``/``--rdzv-*`` flags. A plain ``stadb-reid train`` is a world of one.
"""

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "gather_batch"]

EVALUATION_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job.

    Attributes:
        rank: Global rank (0 logs, evaluates and writes checkpoints).
        world_size: Number of processes.
        device: The device this process trains on (``cuda:LOCAL_RANK`` for CUDA jobs).
        owns_process_group: Whether :meth:`from_environment` created the process group (and
            :meth:`close` destroys it); a group the caller set up is left alone.
    """

    rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device: torch.device) -> "DistributedContext":
        """Join the process group described by torchrun's variables (NCCL on CUDA, gloo on CPU).

        Without ``WORLD_SIZE`` (or with 1) this is a single process on ``device``.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(0, 1, device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        owns_process_group = not dist.is_initialized()
        if owns_process_group:
            # Rank 0 evaluates while the others wait at a barrier: allow long evaluations.
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=EVALUATION_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), device, owns_process_group)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (so that all ranks stop at the same step)."""
        if not self.is_distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group, if this context created it."""
        if self.owns_process_group and dist.is_initialized():
            # A DistributedDataParallel model in a reference cycle (the loop and its hooks) holds the
            # group until a collection; left to interpreter exit, freeing gloo's work aborted the process.
            gc.collect()
            dist.destroy_process_group()


def gather_batch(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` in rank order, keeping the autograd graph.

    Every rank then computes the batch-hard triplet loss over the global batch, as the paper's
    single-GPU batch does. The gather's backward sums each rank's gradient into its own rows, so
    each rank holds ``world_size`` times its share of the gradient, and DistributedDataParallel's
    averaging turns that into exactly the gradient of the global-batch loss.
    """
    if not context.is_distributed:
        return tensor
    if tensor.requires_grad:
        gathered: torch.Tensor = _GatherRows.apply(tensor, context.rank, context.world_size)
        return gathered
    return _all_gather_rows(tensor, context.world_size)


def _all_gather_rows(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    tensor = tensor.contiguous()
    pieces = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(pieces, tensor)
    return torch.cat(pieces, dim=0)


class _GatherRows(torch.autograd.Function):
    """All-gather along rows; the backward sums the gradients of this rank's rows over all ranks.

    Ours rather than ``torch.distributed.nn.functional.all_gather``, which torch 2.14 deprecates.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.world_size = rank, world_size
        return _all_gather_rows(tensor, world_size)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)  # all_reduce works in place
        dist.all_reduce(grad)
        return grad.chunk(ctx.world_size)[ctx.rank], None, None
