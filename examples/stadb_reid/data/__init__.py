"""Data for the STADB re-ID trainer: dataset adapters, the synthetic dataset, sampler, transforms, loaders.

Typical use::

    dataset = build_dataset("market1501", "data/Market-1501-v15.09.15")  # or dataset_from_config(config.data)
    train_loader = build_train_loader(dataset, height=384, width=128, num_identities=32,
                                      num_instances=4, num_workers=4, seed=0, epoch_mode="images")
    query_loader, gallery_loader = build_test_loaders(dataset, height=384, width=128,
                                                      batch_size=128, num_workers=4)
    for epoch in range(epochs):
        train_loader.set_epoch(epoch)
        for images, pids, camids in train_loader:
            ...
"""

from stadb_reid.data.datasets import (
    ReIDDataset,
    ReIDSample,
    available_datasets,
    build_dataset,
    dataset_from_config,
    register_dataset,
)
from stadb_reid.data.loaders import build_test_loaders, build_train_loader
from stadb_reid.data.sampler import PKSampler
from stadb_reid.data.synthetic import generate_synthetic_reid
from stadb_reid.data.transforms import build_test_transform, build_train_transform

__all__ = [
    "PKSampler",
    "ReIDDataset",
    "ReIDSample",
    "available_datasets",
    "build_dataset",
    "build_test_loaders",
    "build_test_transform",
    "build_train_loader",
    "build_train_transform",
    "dataset_from_config",
    "generate_synthetic_reid",
    "register_dataset",
]
