"""``stadb-reid export`` (ONNX, TorchScript) and ``stadb-reid extract`` against the PyTorch model."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from stadb_reid.cli import app, main
from stadb_reid.commands import export_checkpoint, extract_folder
from stadb_reid.commands.export import PREPROCESSING_FILE
from stadb_reid.config import Config, config_to_dict, load_config
from stadb_reid.config.schema import IMAGENET_MEAN, IMAGENET_STD
from stadb_reid.data import build_test_transform
from stadb_reid.engine import build_model, load_checkpoint, train
from stadb_reid.engine.checkpoint import CheckpointError, save_checkpoint
from stadb_reid.engine.run_folder import CHECKPOINT_NAME
from stadb_reid.errors import DatasetNotFoundError, EmptyDatasetError, UnreadableImageError
from stadb_reid.model import STADBNet

from .test_cli_errors import assert_one_line_error, run_cli

HEIGHT, WIDTH = 32, 16
# ONNX Runtime's float32 kernels sum in another order than PyTorch's. Measured on this model: at most
# 2e-7 absolute difference, for embedding entries up to 0.16 (mean 0.011). The tolerance is 50 times
# that and still far below what a wrong export gives: 0.24 without the attention module, 2.0 with
# training-mode batch norm, 0.09 with other weights in one layer.
ONNX_RTOL, ONNX_ATOL = 1e-4, 1e-5
# The images of the folder, as the path list must give them: sorted by relative POSIX path; other
# files are ignored.
FOLDER_IMAGES = ["a/01.jpg", "a/10.png", "a/sub/03.JPG", "b/02.png", "c.bmp"]


def tiny_config(root: Path, **overrides: object) -> Config:
    """ResNet-18 at 32 x 16 on a synthetic dataset of 3 training identities."""
    synthetic = {
        "num_train_identities": 3,
        "num_test_identities": 2,
        "num_cameras": 2,
        "images_per_identity_per_camera": 2,
        "num_distractors": 0,
        "height": HEIGHT,
        "width": WIDTH,
    }
    return load_config(
        [],
        {
            "data.dataset": "synthetic",
            "data.root": str(root / "synthetic"),
            "data.options": synthetic,
            "data.height": HEIGHT,
            "data.width": WIDTH,
            "data.num_identities": 3,
            "data.num_instances": 2,
            "data.num_workers": 0,
            "data.test_batch_size": 8,
            "model.backbone": "resnet18",
            "model.pretrained": False,
            "optim.epochs": 1,
            "optim.warmup_epochs": 1,
            "optim.warmup_step": 1,
            "output_dir": str(root / "run"),
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    """A checkpoint of the full model after one epoch (trained BN statistics), and its config."""
    config = tiny_config(tmp_path_factory.mktemp("export"))
    train(config, progress=False, log=lambda _: None)
    return Path(config.output_dir) / CHECKPOINT_NAME, config


@pytest.fixture(scope="module")
def reference(trained: tuple[Path, Config]) -> STADBNet:
    """The trained model in eval mode, rebuilt from the training config rather than the stored one."""
    checkpoint, config = trained
    state = load_checkpoint(checkpoint)
    model = build_model(config, state["num_classes"], pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Noise images of several sizes and formats in nested folders, plus files that are no images."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index, name in enumerate(reversed(FOLDER_IMAGES)):  # created out of order: the sort must do it
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (12 + 4 * index, 30 + 5 * index)  # (width, height): the test transform resizes
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() == ".jpg" else None)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty").mkdir()
    return folder


def random_images(batch: int, seed: int, height: int = HEIGHT, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


# -------------------------------------------------------------------------------------------- export
def test_cli_export_onnx_matches_pytorch_on_two_batch_sizes(
    trained: tuple[Path, Config], reference: STADBNet
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    checkpoint, _ = trained
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    path = checkpoint.with_suffix(".onnx")  # the default: next to the checkpoint
    assert f"wrote {path}" in result.output
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (images_input,) = session.get_inputs()
    assert images_input.name == "images"
    assert isinstance(images_input.shape[0], str), "the batch axis is symbolic"
    assert images_input.shape[1:] == [3, HEIGHT, WIDTH]
    assert [output.name for output in session.get_outputs()] == ["embeddings"]
    metadata = session.get_modelmeta().custom_metadata_map
    assert (metadata["input_height"], metadata["input_width"]) == (str(HEIGHT), str(WIDTH))
    assert (json.loads(metadata["mean"]), json.loads(metadata["std"])) == (
        list(IMAGENET_MEAN),
        list(IMAGENET_STD),
    )
    assert metadata["embedding_dim"] == "1536"
    for batch, seed in ((1, 1), (5, 2)):
        images = random_images(batch, seed)
        (embeddings,) = session.run(["embeddings"], {"images": images.numpy()})
        with torch.no_grad():
            expected = reference(images)
        assert embeddings.shape == (batch, 1536)
        torch.testing.assert_close(torch.from_numpy(embeddings), expected, rtol=ONNX_RTOL, atol=ONNX_ATOL)


def test_torchscript_export_matches_pytorch_on_two_batch_sizes(
    trained: tuple[Path, Config], reference: STADBNet, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    path = export_checkpoint(checkpoint, "torchscript", tmp_path / "deploy" / "model.ts")
    assert path == tmp_path / "deploy" / "model.ts"
    extra_files = {PREPROCESSING_FILE: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra_files)
    metadata = json.loads(extra_files[PREPROCESSING_FILE])
    assert (metadata["input_height"], metadata["embedding_dim"]) == (str(HEIGHT), "1536")
    for batch, seed in ((1, 3), (6, 4)):
        images = random_images(batch, seed)
        with torch.no_grad():
            # The trace runs PyTorch's own kernels: float32's default tolerance of assert_close.
            torch.testing.assert_close(loaded(images), reference(images))


def test_safetensors_export_holds_the_weights_and_what_rebuilds_the_model(
    trained: tuple[Path, Config], reference: STADBNet, tmp_path: Path
) -> None:
    checkpoint, config = trained
    path = export_checkpoint(checkpoint, "safetensors", tmp_path / "model.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a JSON header after its length: no pickle anywhere
    weights = load_file(str(path))
    expected = {k: v for k, v in reference.state_dict().items() if isinstance(v, torch.Tensor)}
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata()
    assert metadata["num_classes"] == str(load_checkpoint(checkpoint)["num_classes"])
    assert json.loads(metadata["config"]) == config_to_dict(config)
    assert (metadata["input_height"], metadata["embedding_dim"]) == (str(HEIGHT), "1536")


def test_export_of_global_variant_at_another_input_size(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, **{"model.variant": "global"})
    model = build_model(config, 3, pretrained=False)
    checkpoint = tmp_path / CHECKPOINT_NAME
    state = {"model": model.state_dict(), "config": config_to_dict(config), "num_classes": 3, "epoch": 0}
    save_checkpoint(state, checkpoint)
    path = export_checkpoint(checkpoint, "torchscript", height=48, width=24)
    assert path == tmp_path / "checkpoint.torchscript"
    extra_files = {PREPROCESSING_FILE: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra_files)
    metadata = json.loads(extra_files[PREPROCESSING_FILE])
    assert (metadata["input_height"], metadata["input_width"], metadata["embedding_dim"]) == (
        "48",
        "24",
        "512",
    )
    assert metadata["variant"] == "global"
    images = random_images(2, 5, height=48, width=24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval()(images))
    assert loaded(images).shape == (2, 512)


def test_export_errors_name_the_argument(trained: tuple[Path, Config], tmp_path: Path) -> None:
    checkpoint, _ = trained
    message = "format must be one of onnx, torchscript, safetensors, folder, got 'tensorrt'"
    with pytest.raises(ValueError, match=message):
        export_checkpoint(checkpoint, "tensorrt")
    with pytest.raises(ValueError, match="out must differ from the checkpoint"):
        export_checkpoint(checkpoint, "onnx", checkpoint)
    with pytest.raises(ValueError, match="height must be an integer >= 16, got 8"):
        export_checkpoint(checkpoint, "onnx", tmp_path / "model.onnx", height=8)
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint not found: {missing}")):
        export_checkpoint(missing)
    assert not list(tmp_path.iterdir()), "nothing written"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "tensorrt"], "expected onnx or torchscript or safetensors or folder, got 'tensorrt'"),
        (["--out", "{checkpoint}"], "would overwrite the checkpoint"),
    ],
)
def test_cli_export_rejects_bad_options(
    trained: tuple[Path, Config],
    arguments: list,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint, _ = trained
    options = [a.format(checkpoint=checkpoint) for a in arguments]
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), *options], monkeypatch, capsys)
    assert_one_line_error(code, err, message)


# ------------------------------------------------------------------------------------------- extract
def expected_embeddings(model: STADBNet, folder: Path, flip: bool) -> torch.Tensor:
    """One image at a time, opened with PIL directly: an independent path to the same rows."""
    transform = build_test_transform(HEIGHT, WIDTH)
    rows = []
    with torch.no_grad():
        for name in FOLDER_IMAGES:
            with Image.open(folder / name) as image:
                x = transform(image.convert("RGB")).unsqueeze(0)
            embedding = model(x)
            if flip:
                embedding = (embedding + model(x.flip(-1))) / 2
            rows.append(embedding)
    return torch.cat(rows)


@pytest.mark.parametrize("flip", [False, True], ids=["plain", "flip"])
def test_extract_rows_follow_the_path_list(
    trained: tuple[Path, Config], reference: STADBNet, image_folder: Path, tmp_path: Path, flip: bool
) -> None:
    checkpoint, _ = trained
    out = tmp_path / "features" / "feats.npy"
    embeddings = extract_folder(
        checkpoint,
        image_folder,
        out,
        batch_size=2,
        num_workers=0,
        flip=flip,
        precision="fp32",
        progress=False,
    )
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(FOLDER_IMAGES), 1536)
    np.testing.assert_array_equal(np.load(out), embeddings)
    assert out.with_suffix(".txt").read_text().splitlines() == FOLDER_IMAGES
    # Batches of 2 against single images: the same kernels up to the summation order of a batch.
    torch.testing.assert_close(
        torch.from_numpy(embeddings), expected_embeddings(reference, image_folder, flip)
    )


@pytest.mark.parametrize("num_workers", [0, 1])
def test_extract_names_an_unreadable_image(
    trained: tuple[Path, Config], tmp_path: Path, num_workers: int
) -> None:
    checkpoint, _ = trained
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (16, 32)).save(folder / "good.png")
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    bad = re.escape(str(folder / "bad.jpg"))
    with pytest.raises(UnreadableImageError, match=f"^cannot read image {bad}: ") as caught:
        extract_folder(checkpoint, folder, tmp_path / "f.npy", num_workers=num_workers, progress=False)
    assert "\n" not in str(caught.value), "one line, also from a worker process"
    assert caught.value.path == folder / "bad.jpg"
    assert not (tmp_path / "f.npy").exists()


def test_extract_errors_name_the_path(
    trained: tuple[Path, Config], image_folder: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    out = tmp_path / "f.npy"
    nowhere = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"image folder not found: {nowhere}")):
        extract_folder(checkpoint, nowhere, out)
    empty = image_folder / "empty"
    with pytest.raises(EmptyDatasetError, match=rf"no images \(.*\.jpg.*\) in {re.escape(str(empty))}$"):
        extract_folder(checkpoint, empty, out)
    with pytest.raises(ValueError, match=re.escape(f"out must be a .npy file, got {tmp_path / 'f.csv'}")):
        extract_folder(checkpoint, image_folder, tmp_path / "f.csv")
    assert not list(tmp_path.iterdir()), "nothing written"


def test_cli_extract_end_to_end(trained: tuple[Path, Config], image_folder: Path, tmp_path: Path) -> None:
    checkpoint, _ = trained
    out = tmp_path / "feats.npy"
    arguments = ["extract", "--checkpoint", str(checkpoint), "--images", str(image_folder), "--out", str(out)]
    result = CliRunner().invoke(app, [*arguments, "--batch-size", "4", "--num-workers", "0", "--no-flip"])
    assert result.exit_code == 0, result.output
    assert f"wrote 5 x 1536 embeddings to {out}" in result.output
    assert np.load(out).shape == (len(FOLDER_IMAGES), 1536)
    assert (tmp_path / "feats.txt").read_text().splitlines() == FOLDER_IMAGES


def test_cli_extract_reports_data_errors_in_one_line(
    trained: tuple[Path, Config],
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint, _ = trained
    empty = image_folder / "empty"
    arguments = [
        "extract",
        "--checkpoint",
        str(checkpoint),
        "--images",
        str(empty),
        "--out",
        str(tmp_path / "f.npy"),
    ]
    monkeypatch.setattr(sys, "argv", ["stadb-reid", *arguments])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no images (") and error.endswith(f") in {empty}\n")
    assert error.count("\n") == 1
