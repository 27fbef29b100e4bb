"""The file names of a model folder, the one place they are spelled."""

__all__ = ["CARD_NAME", "CONFIG_NAME", "FOLDER_FILES", "WEIGHTS_NAME"]

#: What rebuilds the eval-mode network and feeds it (:mod:`~stadb_reid.model.folder.config`).
CONFIG_NAME = "config.yaml"
#: The weights alone (:mod:`~stadb_reid.model.folder.weights`).
WEIGHTS_NAME = "model.safetensors"
#: The model card (:mod:`~stadb_reid.model.folder.card`).
CARD_NAME = "README.md"
#: Every file a model folder holds; writing one replaces these and leaves anything else alone.
FOLDER_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
