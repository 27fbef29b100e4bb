"""ReIDExtractor: every input kind gives the same embeddings, the model's own preprocessing, clear errors."""

import functools
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import to_dtype
from typer.testing import CliRunner

from stadb_reid.cli import app
from stadb_reid.config import Config, config_to_dict
from stadb_reid.data import build_test_transform
from stadb_reid.errors import ConfigError, ModelFolderError, UnreadableImageError
from stadb_reid.inference import ReIDExtractor
from stadb_reid.model import STADBNet
from stadb_reid.model.folder import read_model_config
from stadb_reid.model.folder.config import trained_model_config

from .test_cli_errors import assert_one_line_error, run_cli
from .test_export import HEIGHT, WIDTH, tiny_config
from .test_model_folder import tiny_network, write_checkpoint, write_folder

SIZES = [(20, 50), (16, 32), (40, 90)]  # (width, height): all resized to the model's 32 x 16


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[STADBNet, Config, Path]:
    root = tmp_path_factory.mktemp("extractor")
    config = tiny_config(root)
    network = tiny_network(config, seed=2)
    return network, config, write_folder(root / "model", network, config)


@pytest.fixture(scope="module")
def extractor(model) -> ReIDExtractor:
    return ReIDExtractor(model[2], batch_size=2, precision="fp32")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for index, (width, height) in enumerate(SIZES):
        path = folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def reference(network: STADBNet, paths: list[Path], flip: bool = False) -> torch.Tensor:
    """One image at a time through the trainer's test transform: an independent path to the rows."""
    transform = build_test_transform(HEIGHT, WIDTH)
    rows = []
    with torch.no_grad():
        for path in paths:
            with Image.open(path) as image:
                x = transform(image.convert("RGB")).unsqueeze(0)
            rows.append((network(x) + network(x.flip(-1))) / 2 if flip else network(x))
    return torch.cat(rows)


def test_the_embeddings_are_those_of_evaluation(model, extractor: ReIDExtractor, photos: list[Path]) -> None:
    raw = extractor(photos, normalize=False, as_tensor=True)
    assert isinstance(raw, torch.Tensor) and raw.shape == (3, 1536) and raw.dtype == torch.float32
    # Batches of 2 against single images: the same kernels up to the summation order of a batch.
    torch.testing.assert_close(raw, reference(model[0], photos))
    normalised = extractor(photos)
    assert isinstance(normalised, np.ndarray) and normalised.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, rtol=1e-6)
    torch.testing.assert_close(torch.from_numpy(normalised), torch.nn.functional.normalize(raw, dim=1))


def test_every_input_kind_gives_the_same_embeddings(extractor: ReIDExtractor, photos: list[Path]) -> None:
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in photos]
    expected = extractor([str(path) for path in photos])
    uint8 = [extractor.preprocess(Image.open(path).convert("RGB")) for path in photos]
    to_float = functools.partial(to_dtype, dtype=torch.float32, scale=True)  # uint8 to [0, 1]
    kinds = {
        "paths": extractor(photos),
        "pil": extractor([Image.open(path) for path in photos]),
        "arrays": extractor(arrays),
        "mixed": extractor([photos[0], arrays[1], Image.open(photos[2])]),
        "uint8 tensors": extractor(uint8),
        "uint8 batch": extractor(torch.stack(uint8)),
        "float tensors": extractor([to_float(tensor) for tensor in uint8]),
        "float batch": extractor(to_float(torch.stack(uint8))),
    }
    for kind, found in kinds.items():
        np.testing.assert_array_equal(found, expected, err_msg=kind)
    # One image a batch: the same kernels up to the summation order of a batch.
    np.testing.assert_allclose(np.concatenate([extractor(a) for a in arrays]), expected, rtol=1e-5, atol=1e-7)
    assert extractor(arrays[0]).shape == (1, 1536)
    assert extractor([]).shape == (0, 1536)


def test_an_nhwc_batch_and_a_tensor_of_another_size(extractor: ReIDExtractor) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (3, 48, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(extractor(frames), extractor(list(frames)))
    large = torch.rand(2, 3, 64, 32)
    assert extractor(large).shape == (2, 1536), "resized to the model's input size"


def test_flip_averages_with_the_mirrored_image(model, photos: list[Path]) -> None:
    flipped = ReIDExtractor(model[2], flip=True, precision="fp32")
    torch.testing.assert_close(
        flipped(photos, normalize=False, as_tensor=True), reference(model[0], photos, flip=True)
    )


def test_fingerprint_is_stable_and_tells_models_apart(model, tmp_path: Path) -> None:
    network, config, folder = model
    fingerprint = ReIDExtractor(folder).fingerprint
    assert re.fullmatch("[0-9a-f]{16}", fingerprint)
    assert ReIDExtractor(shutil.copytree(folder, tmp_path / "copy")).fingerprint == fingerprint
    from_checkpoint = ReIDExtractor.from_network(
        network, trained_model_config(network, config_to_dict(config), 3)
    )
    assert from_checkpoint.fingerprint == fingerprint, "the provenance does not count"
    other = write_folder(tmp_path / "other", tiny_network(config, seed=3), config)
    assert ReIDExtractor(other).fingerprint != fingerprint
    assert ReIDExtractor(folder).embedding_dim == read_model_config(folder).embedding_dim == 1536


# ------------------------------------------------------------------------------------------- errors
def test_an_unreadable_path_is_named(extractor: ReIDExtractor, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    for path in (bad, tmp_path / "missing.png"):
        with pytest.raises(
            UnreadableImageError, match=f"^cannot read image {re.escape(str(path))}: "
        ) as caught:
            extractor([path])
        assert "\n" not in str(caught.value) and caught.value.path == path


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (np.zeros((32, 16), np.uint8), ValueError, "must be (H, W, 3) uint8 RGB, got shape (32, 16)"),
        (np.zeros((32, 16, 3), np.float32), ValueError, "dtype float32"),
        (torch.full((1, 3, 32, 16), -0.5), ValueError, "unnormalised RGB in [0, 1]"),
        (torch.zeros(1, 3, 32, 16, dtype=torch.int32), ValueError, "must be a float or uint8 (N, 3, H, W)"),
        (torch.zeros(1, 4, 32, 16, dtype=torch.uint8), ValueError, "got torch.uint8 (1, 4, 32, 16)"),
        ([3], TypeError, "got int"),
    ],
)
def test_bad_inputs_say_what_is_expected(extractor: ReIDExtractor, images, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        extractor(images)


def test_bad_options_are_refused(model) -> None:
    folder = model[2]
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, onnx, got 'fp8'"):
        ReIDExtractor(folder, precision="fp8")
    with pytest.raises(ConfigError, match="device must be cpu or cuda, got 'tpu'"):
        ReIDExtractor(folder, device="tpu")
    with pytest.raises(ValueError, match="batch_size"):
        ReIDExtractor(folder, batch_size=0)
    with pytest.raises(ModelFolderError, match="model folder not found"):
        ReIDExtractor(folder.parent / "missing")


# ------------------------------------------------------------------------------- stadb-reid extract
def test_cli_extract_with_a_model_folder_matches_the_checkpoint(
    model, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    network, config, folder = model
    checkpoint = write_checkpoint(tmp_path / "checkpoint.pt", network, config)
    common = ["extract", "--images", str(photos[0].parent), "--num-workers", "0", "--no-progress"]
    common += ["--precision", "fp32"]
    for source, out in ((["--model", str(folder)], "a.npy"), (["--checkpoint", str(checkpoint)], "b.npy")):
        result = CliRunner().invoke(app, [*common, *source, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("precision fp32\n")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "a.npy")), reference(network, photos))
    output = ["--out", str(tmp_path / "c.npy")]
    for source, message in (
        ([], "give either --checkpoint FILE or --model DIR"),
        (
            ["--model", str(folder), "--checkpoint", str(checkpoint)],
            "give either --checkpoint FILE or --model",
        ),
        (["--model", str(tmp_path / "nowhere")], f"model folder not found: {tmp_path / 'nowhere'}"),
    ):
        code, _, err = run_cli([*common, *source, *output], monkeypatch, capsys)
        assert_one_line_error(code, err, message)
