"""Up-front check that every image of a dataset opens, so a damaged file stops a run before its first step.

The adapters only list files; without this check a truncated image fails when a loader first reads
it, an epoch or a whole training run later (query and gallery images are read at the first
evaluation). :func:`check_images_open` looks at every image of the three splits cheaply and reports
all the bad ones in one message.

What is read per image, cheapest first: the header (format, width, height: ``PIL.Image.open``); for
a PNG, every chunk and its checksum (``verify``), which a cut file fails; for a JPEG, its last two
bytes, the end-of-image marker a cut file lacks; only a JPEG without that marker (it may carry
trailing bytes) and the rarer formats (BMP, WebP, TIFF...) are decoded. On CUHK03 JPEGs that is
about a tenth of a full decode per image (see ``docs/reid/datasets.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from stadb_reid.data.datasets import ReIDDataset
from stadb_reid.errors import UnreadableImageError

__all__ = ["check_images_open", "image_problem"]

_JPEG_END = b"\xff\xd9"


def _jpeg_has_end_marker(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-2, 2)
        return file.read(2) == _JPEG_END


def image_problem(path: Path) -> str | None:
    """Why the image at ``path`` would fail to load, in a few words, or ``None`` if it loads.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (8, 16)).save(folder / "good.jpg")
        >>> (folder / "cut.jpg").write_bytes((folder / "good.jpg").read_bytes()[:300])
        300
        >>> image_problem(folder / "good.jpg"), image_problem(folder / "cut.jpg")
        (None, 'truncated')
        >>> (folder / "text.png").write_text("hello"), image_problem(folder / "text.png")
        (5, 'not an image')
    """
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                image.verify()  # walks every chunk, checking its CRC
            elif image.format != "JPEG" or not _jpeg_has_end_marker(path):
                image.load()
    except FileNotFoundError:
        return "missing"
    except PermissionError:
        return "not readable"
    except UnidentifiedImageError:
        return "empty file" if path.stat().st_size == 0 else "not an image"
    except Image.DecompressionBombError:
        return f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels"
    except Exception as error:  # Pillow raises many types for a damaged file
        if isinstance(error, OSError) and error.strerror:
            return f"cannot open ({error.strerror})"
        words = str(error).splitlines()[0] if str(error) else type(error).__name__
        truncated = isinstance(error, EOFError) or "truncated" in words.lower()
        return "truncated" if truncated else f"damaged ({words[:80]})"
    return None


def check_images_open(dataset: ReIDDataset | Iterable[Path]) -> None:
    """Raise if any image of ``dataset`` (every split) or of the given paths would fail to load.

    Raises:
        UnreadableImageError: Listing every bad file with its problem, in one line; ``path`` is
            the first of them.
    """
    if isinstance(dataset, ReIDDataset):
        name = f"{dataset.name}: "
        samples = (*dataset.train, *dataset.query, *dataset.gallery)
        paths = sorted({sample.path for sample in samples})
    else:
        name, paths = "", sorted(set(dataset))
    bad = [(path, problem) for path in paths if (problem := image_problem(path)) is not None]
    if bad:
        listed = "; ".join(f"{str(path)!r} ({problem})" for path, problem in bad)
        raise UnreadableImageError(
            f"{name}{len(bad)} of {len(paths)} images cannot be read: {listed}", bad[0][0]
        )
