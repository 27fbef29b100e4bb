"""Every user error of ``stadb-reid`` is one ``error:`` line on stderr and a non-zero exit, before training.

The commands run in-process through :func:`stadb_reid.cli.main`, as the console script runs them.
"""

import sys
from pathlib import Path

import pytest
import torch

from stadb_reid.cli import main
from stadb_reid.data import ReIDDataset, ReIDSample, register_dataset
from stadb_reid.data.datasets.registry import _REGISTRY

from .test_checkpoint import CreatesFile

TINY = (
    "data.options={num_train_identities: 3, num_test_identities: 2, num_cameras: 2, "
    "images_per_identity_per_camera: 2, num_distractors: 0, height: 32, width: 16}"
)


def run_cli(arguments: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(sys, "argv", ["stadb-reid", *arguments])
    with pytest.raises(SystemExit) as stopped:
        main()
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


def assert_one_line_error(code: object, err: str, message: str, expected_code: int = 2) -> None:
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]


def train_arguments(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--recipe",
        "defaults",
        "--dataset",
        "synthetic",
        "--data-root",
        str(tmp_path / "synthetic"),
        "--output-dir",
        str(tmp_path / "run"),
        "--no-pretrained",
        "--no-progress",
        "--set",
        TINY,
        "--set",
        "data.num_workers=0",
        *extra,
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.alpha=2", "model.alpha must lie in (0.0, 1.0], got 2"),
        ("model.rho=1.5", "model.rho must lie in [0.0, 1.0], got 1.5"),
        ("model.variant=foo", "model.variant: Invalid value 'foo', expected one of [ATTENTION, DROP, GLOBAL"),
        ("model.backbone=vgg16", "model.backbone must be a timm ResNet"),
        ("model.attention=foo", "model.attention: Invalid value 'foo', expected one of [CBAM, SE, SRM"),
        ("eval.metric=foo", "eval.metric: Invalid value 'foo', expected one of [EUCLIDEAN"),
        ("data.num_workers=-1", "data.num_workers must be an integer >= 0, got -1"),
        ("optim.epochs=0", "optim.epochs must be an integer >= 1, got 0"),
        ("optim.epochs=-3", "optim.epochs must be an integer >= 1, got -3"),
        ("optim.base_lr=0", "optim.base_lr must lie in (0.0, inf)"),
        ("optim.milestones=[30, 20]", "optim.milestones must be increasing"),
        ("amp=fp8", "amp: Invalid value 'fp8', expected one of [OFF, BF16, FP16]"),
    ],
)
def test_bad_set_values_are_refused_before_anything_runs(
    setting: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(train_arguments(tmp_path, "--set", setting), monkeypatch, capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "synthetic").exists() and not (tmp_path / "run").exists()


def test_the_same_checks_apply_to_an_untrained_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["evaluate", "--untrained", "--dataset", "synthetic", "--data-root", str(tmp_path / "d")]
    code, _, err = run_cli([*arguments, "--set", "model.rho=-0.5"], monkeypatch, capsys)
    assert_one_line_error(code, err, "model.rho must lie in [0.0, 1.0]")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["train", "--dataset", "nope", "--data-root", "{tmp}/d"],
            "data.dataset must be one of celeb_reid, cuhk03",
        ),
        (["train", "--epochs", "0"], "optim.epochs must be an integer >= 1, got 0"),
        (["train", "--no-such-flag"], "No such option: --no-such-flag"),
        (
            ["export", "--checkpoint", "{tmp}/c.pt", "--format", "tflite"],
            "expected onnx or torchscript or safetensors or folder, got 'tflite'",
        ),
    ],
)
def test_usage_errors_are_one_line(
    arguments: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli([a.format(tmp=tmp_path) for a in arguments], monkeypatch, capsys)
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize("command", ["train", "evaluate --untrained"])
def test_a_data_root_without_a_dataset_is_an_error_not_a_new_synthetic_dataset(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "Market-1501-v15.09.51"
    code, _, err = run_cli([*command.split(), "--data-root", str(typo)], monkeypatch, capsys)
    assert_one_line_error(code, err, "no dataset named: pass --dataset NAME")
    assert not typo.exists()


def test_another_dataset_drops_the_config_files_adapter_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # demo_cpu's options are the synthetic generator's; Market-1501's adapter takes none of them.
    arguments = ["train", "--config", "demo_cpu", "--dataset", "market1501", "--data-root", str(tmp_path)]
    code, _, err = run_cli([*arguments, "--output-dir", str(tmp_path / "run")], monkeypatch, capsys)
    assert_one_line_error(code, err, f"market1501: train split folder {tmp_path}")  # not a TypeError


def test_an_option_the_adapter_does_not_take_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = train_arguments(tmp_path, "--set", "data.options={colour: 3}")
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(
        code, err, "dataset 'synthetic' options (data.options): got an unexpected keyword argument 'colour'"
    )


def test_more_identities_per_batch_than_the_dataset_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(train_arguments(tmp_path, "--num-identities", "8"), monkeypatch, capsys)
    assert_one_line_error(code, err, "data.num_identities=8 needs 8 training identities, but synthetic has 3")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.fixture
def dataset_without_matches(tmp_path: Path):
    """A registered dataset whose queries have no gallery image of their identity in another camera."""
    image = tmp_path / "x.jpg"
    train = tuple(ReIDSample(image, pid, camid) for pid in range(4) for camid in range(2))
    query = (ReIDSample(image, 10, 0), ReIDSample(image, 11, 1))
    gallery = (ReIDSample(image, 10, 0), ReIDSample(image, 12, 1))
    register_dataset("no_matches", lambda root: ReIDDataset("no_matches", train, query, gallery))
    yield "no_matches"
    del _REGISTRY["no_matches"]


def test_a_dataset_without_an_evaluable_query_is_refused_before_training(
    dataset_without_matches: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["train", "--dataset", dataset_without_matches, "--data-root", str(tmp_path)]
    arguments += ["--output-dir", str(tmp_path / "run"), "--num-identities", "2", "--no-pretrained"]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, "none of the 2 queries has a gallery image of its identity")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_an_output_folder_that_cannot_be_one(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("mine")
    output = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "run"
    arguments = train_arguments(tmp_path)
    arguments[arguments.index("--output-dir") + 1] = str(output)
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, "taken")
    assert (tmp_path / "taken").read_text() == "mine"


def test_an_unwritable_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Permission bits do not stop root (CI), so the write probe itself is made to fail.
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("stadb_reid.engine.preflight.tempfile.mkstemp", refuse)
    code, _, err = run_cli(train_arguments(tmp_path), monkeypatch, capsys)
    assert_one_line_error(code, err, "is not writable: Permission denied")


def test_backbone_weights_that_would_run_code_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    weights = tmp_path / "resnet10t.pth"
    torch.save({"conv1.weight": CreatesFile(marker)}, weights)
    arguments = train_arguments(tmp_path, "--weights", str(weights), "--num-identities", "2")
    arguments += ["--set", "model.backbone=resnet10t", "--height", "32", "--width", "16"]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, f"cannot load weights file {weights}")
    assert not marker.exists()
