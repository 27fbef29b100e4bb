"""A trained model as a folder to share, written and read here and nowhere else.

A model folder holds three files (their names: :mod:`~stadb_reid.model.folder.names`):

- ``config.yaml``: what rebuilds the eval-mode network and feeds it
  (:mod:`~stadb_reid.model.folder.config`), every value checked when read;
- ``model.safetensors``: the weights alone, read without running any code
  (:mod:`~stadb_reid.model.folder.weights`);
- ``README.md``: the model card, with the Hugging Face Hub's front matter
  (:mod:`~stadb_reid.model.folder.card`).

:mod:`~stadb_reid.model.folder.files` writes and reads the folder as a whole, from a local path or a Hub
repo id (:mod:`~stadb_reid.model.folder.hub`), and measures the network on the meta device before
allocating it (:mod:`~stadb_reid.model.folder.footprint`). :meth:`~stadb_reid.model.STADBNet.from_pretrained`
and :class:`~stadb_reid.inference.ReIDExtractor` load through :func:`load_model_folder`; the trainer and
``stadb-reid export`` write through :func:`save_trained_model`. Nothing here imports the network class,
so the network can import this package.
"""

from .config import ModelFolderConfig, model_folder_config
from .files import load_model_folder, read_model_config, save_model_folder, save_trained_model

__all__ = [
    "ModelFolderConfig",
    "load_model_folder",
    "model_folder_config",
    "read_model_config",
    "save_model_folder",
    "save_trained_model",
]
