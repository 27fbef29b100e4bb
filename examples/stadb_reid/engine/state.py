"""What a training checkpoint holds: :class:`TrainState`, the one definition of its entries."""

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["MODEL_KEYS", "TRAIN_STATE_KEYS", "ResumePosition", "TrainState"]


@dataclass
class ResumePosition:
    """Where a resumed run continues: the 1-based epoch, the batches of it already done, their loss sum."""

    epoch: int = 1
    step: int = 0
    loss_sum: float = 0.0


@dataclass
class TrainState:
    """A training run's state between two steps, as written to ``checkpoint.pt``.

    Attributes:
        model: The network's ``state_dict`` (the branch selector's generator included).
        optimizer: The optimiser's ``state_dict``.
        grad_scaler: The fp16 loss scaler's ``state_dict`` (empty when unused).
        completed_epochs: Epochs finished in full.
        resume_at: Where training continues.
        rng: Every global random generator's state (:func:`~stadb_reid.engine.rng.capture_rng_state`).
        train_seconds: Training time so far, over every session of the run.
        num_classes: Training identities, the classifier's width.
        config: The run's config as a plain dict.
        history: One entry per finished epoch (loss, learning rate, metrics when evaluated).
        torchrun_run_id: The rendezvous id (``TORCHELASTIC_RUN_ID``) of the torchrun job that wrote
            it, ``None`` outside torchrun; an elastic restart resumes only its own job's checkpoint.
    """

    model: dict[str, Any]
    optimizer: dict[str, Any]
    grad_scaler: dict[str, Any]
    completed_epochs: int
    resume_at: ResumePosition
    rng: dict[str, Any]
    train_seconds: float
    num_classes: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    torchrun_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint payload: tensors and plain Python data only (no copies of the tensors)."""
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["resume_at"] = vars(self.resume_at).copy()
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "TrainState":
        """The state stored by :meth:`to_dict` (extra entries are ignored)."""
        values = {name: payload[name] for name in TRAIN_STATE_KEYS}
        values["resume_at"] = ResumePosition(**values["resume_at"])
        return cls(**values)


#: Every entry of a training checkpoint, all of which resuming needs.
TRAIN_STATE_KEYS = tuple(f.name for f in fields(TrainState))
#: The entries that rebuild the trained model (evaluate, export, extract, visualize).
MODEL_KEYS = ("model", "config", "num_classes")
