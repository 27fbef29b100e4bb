"""One optimisation step: cross-entropy plus batch-hard triplet loss per head, on the global batch."""

import torch
from torch import nn

from stadb_layers import SoftMarginBatchHardTriplet

from ..errors import TrainingDivergedError
from ..model import TrainOutput
from .distributed import DistributedContext, gather_batch
from .divergence import first_non_finite
from .precision import Precision

__all__ = ["TrainStep", "reid_loss"]


def reid_loss(
    output: TrainOutput, labels: torch.Tensor, cross_entropy: nn.Module, triplet: nn.Module
) -> torch.Tensor:
    """Sum over heads of cross-entropy on the logits plus the triplet loss on the features."""
    losses = [
        cross_entropy(logits, labels) + triplet(features, labels)
        for features, logits in zip(output.features, output.logits, strict=True)
    ]
    return torch.stack(losses).sum()


class TrainStep:
    """One optimisation step: forward (under autocast), the global-batch loss, backward, update.

    In a multi-process job the features, logits and labels of all ranks are gathered before the
    loss, so the batch-hard triplet mining sees the whole P x K batch of every rank, as in a
    single-process run on the same global batch (see :func:`~stadb_reid.engine.distributed.gather_batch`).

    Args:
        model: The training model (possibly wrapped in DDP or ``torch.compile``).
        optimizer: Its optimiser.
        precision: Autocast mode; fp16 adds a gradient scaler.
        context: The process group (a world of one by default).
        channels_last: Feed the images in NHWC memory format.
        label_smoothing: Of the cross-entropy.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        precision: Precision,
        context: DistributedContext,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.precision = precision
        self.context = context
        self.channels_last = channels_last
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.triplet = SoftMarginBatchHardTriplet()
        self.grad_scaler = torch.amp.GradScaler(precision.device_type, enabled=precision.needs_grad_scaler)

    def loss(self, output: TrainOutput, pids: torch.Tensor) -> torch.Tensor:
        """The loss over the global batch, in fp32."""
        gathered = TrainOutput(
            [gather_batch(f.float(), self.context) for f in output.features],
            [gather_batch(logits.float(), self.context) for logits in output.logits],
        )
        return reid_loss(gathered, gather_batch(pids, self.context), self.cross_entropy, self.triplet)

    def __call__(self, images: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """Run the step on this rank's batch and return the (detached) global-batch loss.

        Raises:
            TrainingDivergedError: The loss, or a gradient outside fp16's loss scaling, is NaN or
                infinite; the optimiser was not stepped.
        """
        device = self.context.device
        images = images.to(device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            output = self.model(images)
        assert isinstance(output, TrainOutput), "the model must be in training mode"
        loss = self.loss(output, pids.to(device))
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"the loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(loss).backward()
        if not self.grad_scaler.is_enabled():
            parameter = first_non_finite((n, p.grad) for n, p in self.model.named_parameters())
            if parameter is not None:
                raise TrainingDivergedError(f"the gradient of {parameter} is not finite")
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return loss.detach()
