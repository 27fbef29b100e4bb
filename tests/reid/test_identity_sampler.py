"""Tests of identity epochs (``data.epoch: identities``): IdentityEpochSampler, its loader and resume."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from stadb_reid.config import load_config
from stadb_reid.config.schema import EpochMode
from stadb_reid.data import PKSampler, ReIDDataset, ReIDSample, build_train_loader
from stadb_reid.data.loaders import SeededBatchSampler, TrainLoader
from stadb_reid.data.sampler import IdentityEpochSampler
from stadb_reid.engine.loop import TrainLoop
from stadb_reid.engine.preflight import check_dataset_fits
from stadb_reid.engine.state import ResumePosition
from stadb_reid.errors import ConfigError

from .test_data import sampler_cases


@settings(max_examples=150, deadline=None)
@given(case=sampler_cases(), epoch=st.integers(0, 5))
def test_every_identity_at_most_once_and_exactly_once_when_divisible(
    case: tuple[list[int], int, int, int, int], epoch: int
) -> None:
    pids, p, k, world, seed = case
    num_ids, by_pid = len(set(pids)), Counter(pids)
    if num_ids < p * world:
        with pytest.raises(ValueError, match=f"at least {p * world} identities, got {num_ids}"):
            IdentityEpochSampler(pids, p, k, seed=seed, world_size=world)
        return
    samplers = [IdentityEpochSampler(pids, p, k, seed=seed, rank=r, world_size=world) for r in range(world)]
    seen: list[list[int]] = []  # identities of each rank, in batch order
    for sampler in samplers:
        sampler.set_epoch(epoch)
        assert len(sampler) == num_ids // (p * world)  # the same on every rank
        batches = list(sampler)
        assert len(batches) == len(sampler)
        mine: list[int] = []
        for batch in batches:
            assert len(batch) == p * k == sampler.batch_size
            identities = [pids[batch[j * k]] for j in range(p)]
            assert [pids[i] for i in batch] == [pid for pid in identities for _ in range(k)]
            for j, pid in enumerate(identities):
                images = batch[j * k : (j + 1) * k]
                if by_pid[pid] >= k:  # without replacement, as the reference draws
                    assert len(set(images)) == k
            mine += identities
        seen.append(mine)
    everything = [pid for mine in seen for pid in mine]
    assert len(everything) == len(set(everything)), "an identity twice in one epoch"
    assert len(everything) == len(samplers[0]) * p * world
    assert num_ids - len(everything) < p * world  # only the tail of the order sits out
    if num_ids % (p * world) == 0:
        assert sorted(everything) == sorted(by_pid)
    # Determinism: a fresh sampler replays the epoch of the last rank.
    again = IdentityEpochSampler(pids, p, k, seed=seed, rank=world - 1, world_size=world)
    again.set_epoch(epoch)
    samplers[-1].set_epoch(epoch)
    assert list(again) == list(samplers[-1])


def test_batch_count_matches_the_reference_loader() -> None:
    # The reference: 751 Market-1501 identities x 4 images in batches of 128, drop_last -> 23.
    pids = [i % 751 for i in range(751 * 17)]  # about Market-1501's 12936 images
    assert len(IdentityEpochSampler(pids, 32, 4)) == (751 * 4) // 128 == 23
    assert len(IdentityEpochSampler(pids, 32, 4, rank=1, world_size=2)) == 11
    assert len(PKSampler(pids, 32, 4)) == 751 * (17 // 4) // 32 == 93  # images epoch: 4 groups each


def test_images_are_drawn_as_the_reference_draws_them() -> None:
    # Identity 0 has 2 images (< K = 4): four independent draws with replacement, so some epochs miss
    # one of them (probability 1/8), unlike PKSampler's top-up. Identity 1 has 10 (>= K): 4 distinct,
    # and over the epochs all 10 come up. Identity 2 has exactly K = 4: all of them, once each.
    pids = [0, 0] + [1] * 10 + [2] * 4
    sampler = IdentityEpochSampler(pids, num_identities=3, num_instances=4, seed=3)
    missing_one, drawn_of_1 = 0, set()
    for epoch in range(60):
        sampler.set_epoch(epoch)
        (batch,) = list(sampler)
        by_pid: dict[int, list[int]] = {}
        for index in batch:
            by_pid.setdefault(pids[index], []).append(index)
        assert set(by_pid[0]) <= {0, 1} and len(by_pid[0]) == 4
        missing_one += len(set(by_pid[0])) == 1
        assert len(set(by_pid[1])) == 4
        drawn_of_1 |= set(by_pid[1])
        assert sorted(by_pid[2]) == [12, 13, 14, 15]
    assert 0 < missing_one < 30
    assert drawn_of_1 == set(range(2, 12))


def test_epochs_differ_and_every_identity_takes_part_over_epochs() -> None:
    pids = [i // 3 for i in range(3 * 10)]  # 10 identities, P = 4: 2 batches, 2 sit out each epoch
    sampler = IdentityEpochSampler(pids, num_identities=4, num_instances=2, seed=0)
    epochs, taking_part = [], set()
    for epoch in range(8):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
        taking_part |= {pids[i] for batch in epochs[-1] for i in batch}
    assert len({str(e) for e in epochs}) == 8
    assert taking_part == set(range(10))


@settings(max_examples=60, deadline=None)
@given(case=sampler_cases(), epoch=st.integers(0, 4), data=st.data())
def test_resuming_mid_epoch_yields_the_remaining_batches(
    case: tuple[list[int], int, int, int, int], epoch: int, data: st.DataObject
) -> None:
    pids, p, k, world, seed = case
    if len(set(pids)) < p * world:
        return
    rank = data.draw(st.integers(0, world - 1))
    whole = SeededBatchSampler(IdentityEpochSampler(pids, p, k, seed=seed, rank=rank, world_size=world), seed)
    whole.set_epoch(epoch)
    batches = list(whole)
    start = data.draw(st.integers(0, len(batches)))
    # A resumed process builds everything anew and skips the batches already done.
    again = IdentityEpochSampler(pids, p, k, seed=seed, rank=rank, world_size=world)
    resumed = SeededBatchSampler(again, seed)
    resumed.set_epoch(epoch, start_batch=start)
    assert len(resumed) == len(batches) - start
    assert list(resumed) == batches[start:]


# ------------------------------------------------------------------------------------ loader, loop
def noise_dataset(folder: Path, counts: list[int]) -> ReIDDataset:
    """Identity ``i`` has ``counts[i]`` random-noise 8 x 16 images (so augmentations show)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = []
    for pid, count in enumerate(counts):
        for n in range(count):
            path = folder / f"{pid}_{n}.png"
            Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).save(path)
            samples.append(ReIDSample(path, pid, n % 2))
    return ReIDDataset("noise", tuple(samples), tuple(samples[:1]), tuple(samples[1:2]))


def identity_loader(dataset: ReIDDataset, num_workers: int = 0) -> TrainLoader:
    return build_train_loader(
        dataset,
        height=16,
        width=8,
        num_identities=3,
        num_instances=2,
        num_workers=num_workers,
        seed=4,
        padding=2,
        cutout_prob=0.5,
        cutout_size=4,
        epoch_mode=EpochMode.IDENTITIES,
    )


def run_loop(dataset: ReIDDataset, start: ResumePosition) -> list[tuple[torch.Tensor, list[int]]]:
    """Every batch a :class:`TrainLoop` from ``start`` to the end of epoch 3 trains on."""
    seen: list[tuple[torch.Tensor, list[int]]] = []

    def step(images: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        seen.append((images, pids.tolist()))
        return torch.zeros(())

    model = nn.Linear(1, 1)
    loop = TrainLoop(
        step,
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loader=identity_loader(dataset),
        schedule=lambda epoch: 0.1,
        epochs=3,
        start=start,
        history=[],
        hooks=[],
    )
    loop.run()
    return seen


def test_train_loop_resumed_mid_epoch_sees_the_same_batches(tmp_path: Path) -> None:
    dataset = noise_dataset(tmp_path / "images", [1, 2, 3, 4, 2, 5, 3])  # 7 identities, P = 3: 2 batches
    whole = run_loop(dataset, ResumePosition())
    assert len(whole) == 3 * 2
    for images, pids in whole:
        assert images.shape == (6, 3, 16, 8) and len(set(pids)) == 3
    for epoch_start in (0, 2, 4):  # each epoch: 6 distinct identities of the 7
        pids = [pid for _, batch in whole[epoch_start : epoch_start + 2] for pid in batch]
        assert len(set(pids)) == 6 and set(Counter(pids).values()) == {2}
    resumed = run_loop(dataset, ResumePosition(epoch=2, step=1))
    assert len(resumed) == len(whole) - 3
    for (got, got_pids), (expected, expected_pids) in zip(resumed, whole[3:], strict=True):
        assert got_pids == expected_pids and torch.equal(got, expected)


def test_loader_epoch_mode_and_workers(tmp_path: Path) -> None:
    dataset = noise_dataset(tmp_path / "images", [4] * 7)
    in_process, workers = identity_loader(dataset), identity_loader(dataset, num_workers=2)
    assert isinstance(in_process.pk_sampler, IdentityEpochSampler)
    for loader in (in_process, workers):
        loader.set_epoch(1)
    pairs = zip(in_process, workers, strict=True)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
    assert len(in_process) == 2  # 7 identities // 3
    images_epoch = build_train_loader(dataset, num_identities=3, num_instances=2, num_workers=0)
    assert isinstance(images_epoch.pk_sampler, PKSampler) and len(images_epoch) == 4  # 28 images // 6
    message = "epoch_mode must be one of images, identities, got 'ids'"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_train_loader(dataset, num_identities=3, num_instances=2, epoch_mode="ids")


# ------------------------------------------------------------------------------------ config, preflight
def test_config_key_and_dataset_check(tmp_path: Path) -> None:
    assert load_config().data.epoch is EpochMode.IMAGES
    config = load_config(
        [], {"data.epoch": "identities", "data.num_identities": 4, "model.pretrained": False}
    )
    assert config.data.epoch is EpochMode.IDENTITIES
    with pytest.raises(ConfigError, match=r"data\.epoch"):
        load_config([], {"data.epoch": "identity"})
    for name in ["a", "b", *map(str, range(7))]:  # the check also opens every image
        Image.new("RGB", (4, 8)).save(tmp_path / f"{name}.jpg")
    sample = ReIDSample(tmp_path / "a.jpg", 0, 0)
    train = tuple(ReIDSample(tmp_path / f"{i}.jpg", i, 0) for i in range(7))
    dataset = ReIDDataset("seven", train, (sample,), (ReIDSample(tmp_path / "b.jpg", 0, 1),))
    check_dataset_fits(config, dataset)  # 7 identities, P = 4: one batch
    message = (
        "data.num_identities=4 x 2 processes needs 8 training identities (data.epoch=identities gives one "
        "batch per 8 identities), but seven has 7; lower --num-identities"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_dataset_fits(config, dataset, world_size=2)
    config.data.epoch = EpochMode.IMAGES
    with pytest.raises(ConfigError, match=re.escape("needs 8 training identities, but seven has 7")):
        check_dataset_fits(config, dataset, world_size=2)
