"""Identity batch samplers: P identities x K images per batch, optionally split across ranks.

Batch-hard triplet mining needs every batch to hold several images of each identity. Both samplers
are *batch* samplers (pass them as ``DataLoader(batch_sampler=...)``) whose batches hold
``P = num_identities`` distinct identities with ``K = num_instances`` images each, laid out identity
by identity: ``[a, a, a, a, b, b, b, b, ...]``. They differ in what an epoch covers:

- :class:`PKSampler` (``data.epoch: images``): every training image about once per epoch.
- :class:`IdentityEpochSampler` (``data.epoch: identities``): every identity once per epoch, as the
  reference code's ``RandomIdentitySampler`` does (Market-1501, P = 32: 751 // 32 = 23 batches).

Everything is drawn from ``numpy.random.default_rng([seed, epoch, ...])``, so an epoch is
reproducible from ``seed`` and ``epoch`` alone: resume by calling ``set_epoch`` with the epoch to
redo and skipping the batches already done (:class:`~stadb_reid.data.loaders.SeededBatchSampler`).
The number of batches is the same on every rank and in every epoch, and ranks get disjoint
identities.

:class:`PKSampler`, one epoch:

1. Each identity's images are shuffled and cut into groups of K; an identity with ``n >= K``
   images gives ``n // K`` groups (the ``n % K`` left over are skipped this epoch), one with
   ``n < K`` images gives a single group holding all of them, topped up by drawing again with
   replacement. An image appears at most once per epoch unless its identity has fewer than K.
2. The identities are shuffled, and ranks take them in that order: each rank receives whole
   identities (an identity is never split between ranks in an epoch) until it has
   ``P x len(sampler)`` groups, taking at most ``len(sampler)`` groups of one identity.
3. Each rank spreads its groups over its batches so that no batch holds an identity twice
   (groups laid out identity by identity, group ``j`` in batch ``j mod B``), then shuffles the
   batch order.

``len(sampler)`` is the largest ``B`` for which step 2 always succeeds, whatever the shuffle:
``sum_i min(g_i, B) >= W*P*B + (W-1)*(B-1)`` with ``g_i`` the groups of identity ``i`` and ``W``
the world size. With one rank it is the largest possible number of P x K batches.

Examples:
    >>> pids = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
    >>> sampler = PKSampler(pids, num_identities=2, num_instances=2, seed=0)
    >>> len(sampler), sampler.batch_size  # 2 + 1 + 1 + 2 groups of K = 2 -> 3 batches of 2 ids
    (3, 4)
    >>> batches = list(sampler)
    >>> all(len({pids[i] for i in b}) == 2 for b in batches)
    True
    >>> sampler.set_epoch(1)
    >>> list(sampler) != batches
    True
    >>> len(IdentityEpochSampler(pids, num_identities=2, num_instances=2))  # 4 identities // 2
    2
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from stadb_layers.checks import check_int

__all__ = ["IdentityBatchSampler", "IdentityEpochSampler", "PKSampler"]


class IdentityBatchSampler(Sampler[list[int]]):
    """Base of the P x K batch samplers: checks the arguments and groups the indices by identity.

    Args:
        pids: The identity of every dataset index (e.g. ``[s.pid for s in dataset.train]``).
        num_identities: P, identities per batch and rank.
        num_instances: K, images per identity in a batch.
        seed: Seed of the shuffling; use the same on every rank.
        rank: This process's rank in ``[0, world_size)``.
        world_size: Number of processes; each gets disjoint identities and ``len(self)`` batches.

    Raises:
        ValueError: An argument is out of range (the message names it), ``pids`` is empty, or
            there are fewer than ``num_identities x world_size`` identities.
    """

    def __init__(
        self,
        pids: Sequence[int],
        num_identities: int = 32,
        num_instances: int = 4,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_identities = check_int(num_identities, "num_identities", 1)
        self.num_instances = check_int(num_instances, "num_instances", 1)
        self.seed = check_int(seed, "seed", 0)
        self.world_size = check_int(world_size, "world_size", 1)
        self.rank = check_int(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {rank}")
        by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            by_pid.setdefault(int(pid), []).append(index)
        if not by_pid:
            raise ValueError("pids must not be empty")
        self._pids = sorted(by_pid)
        self._indices = [np.asarray(by_pid[p], dtype=np.int64) for p in self._pids]
        needed = self.num_identities * self.world_size
        if len(self._pids) < needed:
            raise ValueError(
                f"num_identities={self.num_identities} x world_size={self.world_size} needs at least "
                f"{needed} identities, got {len(self._pids)}"
            )
        self.epoch = 0
        self._num_batches = self._count_batches()

    def _count_batches(self) -> int:
        """Batches per epoch and rank (the subclass's epoch definition)."""
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        """Indices per batch on this rank (``num_identities * num_instances``)."""
        return self.num_identities * self.num_instances

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``__iter__`` yields (call before every epoch)."""
        self.epoch = check_int(epoch, "epoch", 0)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank and in every epoch)."""
        return self._num_batches


def _feasible(groups: Sequence[int], batches: int, p: int, world_size: int) -> bool:
    capped = sum(min(g, batches) for g in groups)
    return capped >= world_size * p * batches + (world_size - 1) * (batches - 1)


def _max_batches(groups: Sequence[int], p: int, world_size: int) -> int:
    """Largest B that :func:`_feasible` accepts (the slack is concave in B, so bisect)."""
    lo, hi = 0, sum(groups) // (p * world_size)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _feasible(groups, mid, p, world_size):
            lo = mid
        else:
            hi = mid - 1
    return lo


class PKSampler(IdentityBatchSampler):
    """P x K batches covering every training image about once per epoch (see the module doc).

    Takes the arguments of :class:`IdentityBatchSampler`.
    """

    def _count_batches(self) -> int:
        self._groups = [max(1, len(ix) // self.num_instances) for ix in self._indices]
        # At least one batch: with W*P identities, one group each suffices for B = 1.
        return _max_batches(self._groups, self.num_identities, self.world_size)

    def _groups_of(self, identity: int, count: int) -> list[list[int]]:
        """``count`` groups of K indices of ``identity``, from its own per-epoch stream."""
        k = self.num_instances
        rng = np.random.default_rng([self.seed, self.epoch, 0, identity])
        ix = rng.permutation(self._indices[identity])
        if len(ix) < k:
            ix = np.concatenate([ix, rng.choice(ix, k - len(ix), replace=True)])
        return [ix[g * k : (g + 1) * k].tolist() for g in range(count)]

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's ``len(self)`` batches of the current epoch."""
        b, p = self._num_batches, self.num_identities
        order = np.random.default_rng([self.seed, self.epoch, 1]).permutation(len(self._pids))
        # Step 2: walk the shuffled identities, giving each rank P*B groups (identical on all ranks).
        position = 0
        mine: list[tuple[int, int]] = []  # (identity, groups) of this rank, in order
        for rank in range(self.world_size):
            need = p * b
            while need > 0:
                identity = int(order[position])
                position += 1
                take = min(self._groups[identity], b, need)
                need -= take
                if rank == self.rank:
                    mine.append((identity, take))
        # Step 3: group j goes to batch j mod B; runs of one identity are <= B long, so distinct.
        batches: list[list[int]] = [[] for _ in range(b)]
        j = 0
        for identity, take in mine:
            for group in self._groups_of(identity, take):
                batches[j % b].extend(group)
                j += 1
        for i in np.random.default_rng([self.seed, self.epoch, 2, self.rank]).permutation(b):
            yield batches[i]


class IdentityEpochSampler(IdentityBatchSampler):
    """P x K batches covering every identity once per epoch, as the reference code samples.

    The reference (``RandomIdentitySampler`` with ``DataLoader(batch_size=P*K, drop_last=True)``)
    shuffles the identities, draws K images of each, and cuts the stream into batches, dropping the
    last ``num_ids mod P`` identities. Here, with ``W`` ranks, the shuffled identities are cut into
    ``len(self) = num_ids // (P*W)`` steps of ``P*W``, and rank ``r`` takes the ``r``-th run of P in
    each step; the ``num_ids mod (P*W)`` identities left at the end of the order sit out the epoch.
    The K images of an identity are drawn as the reference draws them: without replacement when it
    has at least K, otherwise K independent draws *with* replacement (so some of its images may be
    missing from the epoch), each identity from its own per-epoch stream.

    Takes the arguments of :class:`IdentityBatchSampler`.
    """

    def _count_batches(self) -> int:
        return len(self._pids) // (self.num_identities * self.world_size)

    def _images_of(self, identity: int) -> list[int]:
        ix = self._indices[identity]
        rng = np.random.default_rng([self.seed, self.epoch, 0, identity])
        chosen: list[int] = rng.choice(ix, self.num_instances, replace=len(ix) < self.num_instances).tolist()
        return chosen

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's ``len(self)`` batches of the current epoch."""
        p, step = self.num_identities, self.num_identities * self.world_size
        order = np.random.default_rng([self.seed, self.epoch, 1]).permutation(len(self._pids))
        for b in range(self._num_batches):
            start = b * step + self.rank * p
            yield [index for identity in order[start : start + p] for index in self._images_of(int(identity))]
