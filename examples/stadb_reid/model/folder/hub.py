"""Model folders on the Hugging Face Hub, through ``huggingface_hub`` when it is installed.

``huggingface_hub`` is imported only when a download is asked for, so the trainer works without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ...errors import ModelFolderError

__all__ = ["download_from_hub", "is_repo_id"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(text: str) -> bool:
    """Whether ``text`` has the form of a Hub repo id, ``owner/name``.

    Examples:
        >>> is_repo_id("someone/stadb-market1501"), is_repo_id("outputs/run/model"), is_repo_id("./a/b")
        (True, False, False)
    """
    return _REPO_ID.match(text) is not None


def download_from_hub(repo_id: str, files: Sequence[str]) -> Path:
    """Download ``files`` of the Hub model repo ``repo_id`` (cached; offline, the cache serves).

    Returns:
        The local folder holding them.

    Raises:
        ModelFolderError: ``huggingface_hub`` is not installed, or the download failed (offline, no
            such repo, no access); one line naming the repo id and what to do.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelFolderError(
            f"model folder not found: {repo_id} (to download it as a Hugging Face Hub repo id, "
            "pip install huggingface_hub)"
        ) from None
    try:
        local = snapshot_download(repo_id, allow_patterns=list(files))
    except Exception as error:  # offline, unknown repo, bad token: the library's errors share no base
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ModelFolderError(
            f"cannot download model {repo_id} from the Hugging Face Hub "
            f"({lines[0] if lines else type(error).__name__}); no local folder has that name either: "
            "check the network and the repo id, or pass the path of a downloaded folder"
        ) from error
    return Path(str(local))
