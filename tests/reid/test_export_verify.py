"""``stadb-reid export --verify``: an export against the checkpoint's PyTorch model; a bad one fails."""

import re
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from stadb_reid.cli import app
from stadb_reid.commands import export_checkpoint
from stadb_reid.commands import verify as verify_module
from stadb_reid.commands.verify import verify_export
from stadb_reid.config import Config
from stadb_reid.engine.run_folder import CHECKPOINT_NAME
from stadb_reid.errors import ExportVerificationError
from stadb_reid.model.folder.names import WEIGHTS_NAME

from .test_cli_errors import assert_one_line_error, run_cli
from .test_export import tiny_config
from .test_model_folder import tiny_network, write_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    root = tmp_path_factory.mktemp("verify")
    config = tiny_config(root)
    return write_checkpoint(root / "run" / CHECKPOINT_NAME, tiny_network(config, seed=4), config), config


@pytest.mark.parametrize("format_", ["torchscript", "folder", "safetensors"])
def test_a_good_export_passes(checkpoint, tmp_path: Path, format_: str) -> None:
    path = export_checkpoint(checkpoint[0], format_, tmp_path / f"model.{format_}")
    report = verify_export(checkpoint[0], path, format_)
    assert report.passed and report.batch_sizes == (1, 8)
    assert report.max_difference <= report.tolerance and report.tolerance > 0
    assert report.pytorch_metrics is None and "match" in report.lines()[0]


def test_a_tampered_folder_fails_in_one_line(checkpoint, tmp_path: Path) -> None:
    folder = export_checkpoint(checkpoint[0], "folder", tmp_path / "model")
    tensors = load_file(str(folder / WEIGHTS_NAME))
    tensors["branch_head.reduction.0.weight"] = tensors["branch_head.reduction.0.weight"] * 1.1
    save_file(tensors, str(folder / WEIGHTS_NAME))
    with pytest.raises(ExportVerificationError, match=f"^{re.escape(str(folder))} does not match ") as caught:
        verify_export(checkpoint[0], folder, "folder")
    assert "MISMATCH" in str(caught.value) and "\n" not in str(caught.value)


def test_a_torchscript_of_other_weights_fails(checkpoint, tmp_path: Path) -> None:
    other = write_checkpoint(tmp_path / CHECKPOINT_NAME, tiny_network(checkpoint[1], seed=5), checkpoint[1])
    path = export_checkpoint(other, "torchscript")
    with pytest.raises(ExportVerificationError, match=r"does not match .*: MISMATCH$"):
        verify_export(checkpoint[0], path, "torchscript")


def test_a_damaged_onnx_file_is_named(checkpoint, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ExportVerificationError, match=f"^cannot load {re.escape(str(path))} as onnx: "):
        verify_export(checkpoint[0], path, "onnx")


def test_cli_export_onnx_verify_reports_the_ranking_of_both(checkpoint, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path, config = checkpoint
    out = tmp_path / "model.onnx"
    arguments = ["export", "--checkpoint", str(path), "--out", str(out), "--verify"]
    result = CliRunner().invoke(app, [*arguments, "--data-root", config.data.root])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"wrote {out}"
    assert re.fullmatch(r"max \|exported - PyTorch\| \S+ at batch 1 and 8 \(tolerance \S+\): match", lines[1])
    assert re.fullmatch(r" PyTorch: rank-1 \d+\.\d%  mAP \d+\.\d%", lines[2]), lines[2]
    assert re.fullmatch(r"exported: rank-1 \d+\.\d%  mAP \d+\.\d%", lines[3]), lines[3]
    assert lines[2].split(":")[1] == lines[3].split(":")[1], "the same ranking"


def test_cli_verify_failure_exits_1_in_one_line(
    checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(verify_module, "RELATIVE_TOLERANCE", -1.0)  # nothing passes
    out = tmp_path / "model.torchscript"
    arguments = ["export", "--checkpoint", str(checkpoint[0]), "--format", "torchscript", "--out", str(out)]
    code, _, err = run_cli([*arguments, "--verify"], monkeypatch, capsys)
    assert_one_line_error(code, err, f"{out} does not match {checkpoint[0]}: max |exported", expected_code=1)


def test_cli_dataset_options_need_verify(
    checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["export", "--checkpoint", str(checkpoint[0]), "--data-root", str(tmp_path)]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, "is for the ranking check of --verify")
