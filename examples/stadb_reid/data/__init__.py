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
    IMAGE_EXTENSIONS,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetOptionError,
    EmptyDatasetError,
    FileNameError,
    ReIDDataError,
    ReIDDataset,
    ReIDSample,
    UnknownDatasetError,
    UnreadableImageError,
    available_datasets,
    build_dataset,
    dataset_from_config,
    load_celeb_reid,
    load_cuhk03,
    load_dukemtmc,
    load_folder,
    load_market1501,
    load_msmt17,
    load_synthetic,
    load_viper,
    register_dataset,
)
from stadb_reid.data.integrity import check_images_open, image_problem
from stadb_reid.data.loaders import (
    EPOCH_SAMPLERS,
    ImageDataset,
    SeededBatchSampler,
    TrainLoader,
    build_test_loaders,
    build_train_loader,
    read_image,
)
from stadb_reid.data.sampler import IdentityBatchSampler, IdentityEpochSampler, PKSampler
from stadb_reid.data.synthetic import StaleDatasetError, generate_synthetic_reid, render_person
from stadb_reid.data.transforms import (
    Cutout,
    build_test_transform,
    build_train_transform,
    cutout_side,
)

__all__ = [
    "EPOCH_SAMPLERS",
    "IMAGE_EXTENSIONS",
    "Cutout",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetOptionError",
    "EmptyDatasetError",
    "FileNameError",
    "IdentityBatchSampler",
    "IdentityEpochSampler",
    "ImageDataset",
    "PKSampler",
    "ReIDDataError",
    "ReIDDataset",
    "ReIDSample",
    "SeededBatchSampler",
    "StaleDatasetError",
    "TrainLoader",
    "UnknownDatasetError",
    "UnreadableImageError",
    "available_datasets",
    "build_dataset",
    "build_test_loaders",
    "build_test_transform",
    "build_train_loader",
    "build_train_transform",
    "check_images_open",
    "cutout_side",
    "dataset_from_config",
    "generate_synthetic_reid",
    "image_problem",
    "load_celeb_reid",
    "load_cuhk03",
    "load_dukemtmc",
    "load_folder",
    "load_market1501",
    "load_msmt17",
    "load_synthetic",
    "load_viper",
    "read_image",
    "register_dataset",
    "render_person",
]
