"""The model folder (config.yaml, model.safetensors, README.md): read without pickle, from disk or the Hub."""

import json
import pickle
import re
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from stadb_reid.cli import app
from stadb_reid.commands.evaluate import load_trained_model
from stadb_reid.config import Config, config_to_dict
from stadb_reid.engine import build_model, train
from stadb_reid.engine.checkpoint import save_checkpoint
from stadb_reid.engine.preflight import prepare_output_dir
from stadb_reid.engine.run_folder import CHECKPOINT_NAME, METRICS_NAME, MODEL_DIR
from stadb_reid.errors import ConfigError, ModelFolderError
from stadb_reid.model import STADBNet
from stadb_reid.model.folder import read_model_config, save_trained_model
from stadb_reid.model.folder.names import CARD_NAME, CONFIG_NAME, FOLDER_FILES, WEIGHTS_NAME

from .test_cli_errors import assert_one_line_error, run_cli
from .test_export import HEIGHT, WIDTH, random_images, tiny_config


def tiny_network(config: Config, seed: int = 0) -> STADBNet:
    """The config's untrained network with random batch-norm statistics, so eval mode is not trivial."""
    torch.manual_seed(seed)
    network = build_model(config, 3, pretrained=False)
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return network.eval()


def write_folder(folder: Path, network: STADBNet, config: Config, **options: Any) -> Path:
    return save_trained_model(folder, network, config_to_dict(config), 3, **options)


def write_checkpoint(path: Path, network: STADBNet, config: Config) -> Path:
    save_checkpoint({"model": network.state_dict(), "config": config_to_dict(config), "num_classes": 3}, path)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[STADBNet, Config, Path]:
    """A tiny network, its run config and its model folder (with metrics for the card)."""
    root = tmp_path_factory.mktemp("folder")
    config = tiny_config(root)
    network = tiny_network(config)
    folder = write_folder(
        root / "model", network, config, metrics={"rank1": 87.5, "mAP": 70.25, "history": []}
    )
    return network, config, folder


@pytest.fixture
def copy_of(source: tuple[STADBNet, Config, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(source[2], tmp_path / "model"))


def embeddings(network: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return network(random_images(4, seed))


# ----------------------------------------------------------------------------------------- round trip
def test_folder_holds_three_files_and_loads_to_the_same_embeddings(source) -> None:
    network, _, folder = source
    assert sorted(path.name for path in folder.iterdir()) == sorted(FOLDER_FILES)
    loaded = STADBNet.from_pretrained(folder)
    assert not loaded.training
    assert torch.equal(embeddings(loaded), embeddings(network))
    assert torch.equal(embeddings(STADBNet.from_pretrained(str(folder))), embeddings(network))


def test_config_and_card_describe_the_model(source) -> None:
    folder = source[2]
    config = read_model_config(folder)
    assert (config.num_classes, config.embedding_dim, config.height, config.width) == (3, 1536, HEIGHT, WIDTH)
    assert config.mean == (0.485, 0.456, 0.406) and config.std == (0.229, 0.224, 0.225)
    assert config.model["backbone"] == "resnet18" and "pretrained" not in config.model
    assert config.provenance["dataset"] == "synthetic"
    assert config.provenance["metrics"] == {"rank1": 87.5, "mAP": 70.25}, "numbers only"
    assert config.provenance["command"]
    card = (folder / CARD_NAME).read_text()
    assert card.startswith("---\nlibrary_name: stadb-reid\n")
    for expected in (
        "**synthetic** (3 identities)",
        "| rank-1 | 87.5 % |",
        f"{HEIGHT} x {WIDTH}",
        "ReIDExtractor",
    ):
        assert expected in card, expected


@pytest.mark.parametrize(
    "overrides",
    [
        {"model.variant": "global"},
        {"model.eval_attention": False, "model.extra_bottleneck": False, "model.cbam.reduction": 4},
        {"model.attention": "se", "model.rho": 0.5},
    ],
    ids=["global", "authors-code", "se"],
)
def test_every_model_setting_survives_the_round_trip(tmp_path: Path, overrides: dict) -> None:
    """The folder rebuilds the network build_model builds: same tensors, same eval-mode embeddings."""
    config = tiny_config(tmp_path, **overrides)
    network = tiny_network(config, seed=1)
    loaded = STADBNet.from_pretrained(write_folder(tmp_path / "model", network, config))
    assert loaded.state_dict().keys() == network.state_dict().keys()
    assert torch.equal(embeddings(loaded), embeddings(network))


def test_save_refuses_to_replace_files_unless_asked(source, copy_of: Path) -> None:
    network, config, _ = source
    (copy_of / "notes.txt").write_text("mine")
    with pytest.raises(
        ModelFolderError, match=re.escape(f"{copy_of / CONFIG_NAME} exists; pass --overwrite")
    ):
        write_folder(copy_of, network, config)
    write_folder(copy_of, network, config, overwrite=True)
    assert (copy_of / "notes.txt").read_text() == "mine", "other files are left alone"


# ------------------------------------------------------------------------------------------ safety
def test_loading_never_unpickles(source, copy_of: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    network, _, _ = source

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling was attempted")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, refuse)
    assert torch.equal(embeddings(STADBNet.from_pretrained(copy_of)), embeddings(network))
    weights = copy_of / WEIGHTS_NAME
    weights.write_bytes(pickle.dumps({"backbone.conv1.weight": [0.0]}))  # a pickle in its place
    with pytest.raises(
        ModelFolderError, match=f"^{re.escape(str(weights))} is not a readable safetensors file"
    ):
        STADBNet.from_pretrained(copy_of)


def test_weights_that_do_not_fit_name_the_first_tensor(copy_of: Path) -> None:
    path = copy_of / WEIGHTS_NAME
    tensors = load_file(str(path))
    prefix = re.escape(f"{path} does not fit the network of config.yaml: ")

    wrong = {**tensors, "global_head.classifier.weight": torch.zeros(4, 512)}
    save_file(wrong, str(path))
    with pytest.raises(
        ModelFolderError,
        match=prefix
        + re.escape(
            "tensor 'global_head.classifier.weight' has shape (4, 512) in the file, (3, 512) in the network"
        ),
    ):
        STADBNet.from_pretrained(copy_of)
    save_file({k: v for k, v in tensors.items() if k != "backbone.bn1.running_var"}, str(path))
    with pytest.raises(ModelFolderError, match=prefix + "missing tensor 'backbone.bn1.running_var'$"):
        STADBNet.from_pretrained(copy_of)
    save_file({**tensors, "extra.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ModelFolderError, match=prefix + "unexpected tensor 'extra.weight'$"):
        STADBNet.from_pretrained(copy_of)


def test_config_of_another_network_names_the_missing_tensor(copy_of: Path) -> None:
    config = copy_of / CONFIG_NAME
    config.write_text(config.read_text().replace("backbone: resnet18", "backbone: resnet34"))
    with pytest.raises(ModelFolderError, match=r"missing tensor 'backbone\.layer1\.2\.conv1\.weight'$"):
        STADBNet.from_pretrained(copy_of)


# ------------------------------------------------------------------------------------- bad folders
@pytest.mark.parametrize("name", [CONFIG_NAME, WEIGHTS_NAME])
def test_a_missing_file_is_named(copy_of: Path, name: str) -> None:
    (copy_of / name).unlink()
    with pytest.raises(ModelFolderError, match=f"^model folder {re.escape(str(copy_of))} lacks {name}$"):
        STADBNet.from_pretrained(copy_of)


def test_a_missing_or_wrong_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match=f"^model folder not found: {re.escape(str(tmp_path / 'x'))}$"):
        STADBNet.from_pretrained(tmp_path / "x")
    with pytest.raises(ModelFolderError, match=r"model folder not found: nowhere/a/b$"):
        STADBNet.from_pretrained("nowhere/a/b")  # not of the form owner/name: never tried on the Hub
    (tmp_path / "file").write_text("")
    with pytest.raises(ModelFolderError, match="is a file, not a model folder"):
        STADBNet.from_pretrained(tmp_path / "file")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("format: stadb-reid-model/1", "format: other/2", "has format 'other/2'; this version reads"),
        (f"  height: {HEIGHT}\n", "", "lacks input.height"),
        (f"  height: {HEIGHT}\n", "  height: tall\n", "input.height must be of type int, got 'tall'"),
        ("  - 0.229\n", "  - 0.0\n", "input.std must be positive"),
        ("  backbone: resnet18\n", "  backbone: resnet18\n  colour: red\n", "model.colour"),
        ("num_classes: 3", "num_classes: [3", "cannot read"),
    ],
)
def test_a_bad_config_is_named_with_its_key(copy_of: Path, old: str, new: str, message: str) -> None:
    path = copy_of / CONFIG_NAME
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ModelFolderError, match=re.escape(str(path))) as caught:
        STADBNet.from_pretrained(copy_of)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- Hub
def fake_hub(monkeypatch: pytest.MonkeyPatch, snapshot_download) -> None:
    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot_download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)


def test_a_repo_id_is_downloaded_with_the_three_files(source, monkeypatch: pytest.MonkeyPatch) -> None:
    network, _, folder = source
    calls = []

    def snapshot_download(repo_id: str, **options: object) -> str:
        calls.append((repo_id, options))
        return str(folder)

    fake_hub(monkeypatch, snapshot_download)
    loaded = STADBNet.from_pretrained("someone/stadb-tiny")
    assert calls == [("someone/stadb-tiny", {"allow_patterns": list(FOLDER_FILES)})]
    assert torch.equal(embeddings(loaded), embeddings(network))


def test_offline_hub_gives_one_line_naming_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    def snapshot_download(repo_id: str, **options: object) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    fake_hub(monkeypatch, snapshot_download)
    with pytest.raises(ModelFolderError) as caught:
        STADBNet.from_pretrained("someone/stadb-tiny")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "cannot download model someone/stadb-tiny from the Hugging Face Hub (We couldn't"
    )
    assert "check the network and the repo id, or pass the path of a downloaded folder" in message


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(
        ModelFolderError,
        match=r"^model folder not found: someone/stadb-tiny \(.*pip install huggingface_hub\)$",
    ):
        STADBNet.from_pretrained("someone/stadb-tiny")


# ----------------------------------------------------------------------------- export and training
def test_cli_export_folder_beside_the_checkpoint_with_the_runs_metrics(
    source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    network, config, _ = source
    checkpoint = write_checkpoint(tmp_path / CHECKPOINT_NAME, network, config)
    metrics = {"rank1": 50.0, "mAP": 40.0, "config": config_to_dict(config)}
    (tmp_path / METRICS_NAME).write_text(json.dumps(metrics))
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--format", "folder"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / MODEL_DIR
    assert f"wrote {folder}" in result.output
    assert read_model_config(folder).provenance["metrics"] == {"rank1": 50.0, "mAP": 40.0}
    assert torch.equal(embeddings(STADBNet.from_pretrained(folder)), embeddings(network))
    code, _, err = run_cli(
        ["export", "--checkpoint", str(checkpoint), "--format", "folder"], monkeypatch, capsys
    )
    assert_one_line_error(code, err, f"{folder / CONFIG_NAME} exists; pass --overwrite to replace it")


def test_training_writes_the_model_folder_and_overwrite_removes_it(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    train(config, progress=False, log=lambda _: None)
    run = Path(config.output_dir)
    folder = run / MODEL_DIR
    described = read_model_config(folder)
    assert described.provenance["metrics"]["rank1"] >= 0 and described.provenance["dataset"] == "synthetic"
    trained, _, _ = load_trained_model(run / CHECKPOINT_NAME)
    assert torch.equal(embeddings(STADBNet.from_pretrained(folder)), embeddings(trained))
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds an earlier run \(.*\bmodel\b"):
        prepare_output_dir(run, resume=False, overwrite=False)
    prepare_output_dir(run, resume=False, overwrite=True)
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt"], "only the run's files go"
