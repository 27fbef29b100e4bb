import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from stadb_reid.cli import app
from stadb_reid.config import config_to_dict, load_config
from stadb_reid.config.files import CONFIG_DIR, flatten_config
from stadb_reid.engine import load_checkpoint
from stadb_reid.engine.schedule import learning_rate
from stadb_reid.errors import ConfigError


def paper_rule(epoch: int) -> float:
    """The reference code's schedule, written out as in the issue."""
    if epoch < 50:
        return 1e-4 * (epoch // 5 + 1)
    if epoch < 200:
        return 1e-3
    if epoch < 300:
        return 1e-4
    return 1e-5


def test_schedule_matches_the_paper_for_all_600_epochs() -> None:
    for epoch in range(1, 601):
        assert learning_rate(epoch) == pytest.approx(paper_rule(epoch), rel=1e-12), epoch


def test_schedule_counts_epochs_from_one() -> None:
    with pytest.raises(ValueError, match="epoch counts from 1"):
        learning_rate(0)


def test_every_bundled_config_loads() -> None:
    names = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
    assert {
        "market1501",
        "dukemtmc",
        "cuhk03_labeled",
        "cuhk03_detected",
        "msmt17",
        "viper",
        "demo_cpu",
    } <= set(names)
    for name in names:
        load_config([name])


def test_paper_settings_in_dataset_configs() -> None:
    config = load_config(["market1501"])
    assert (config.data.height, config.data.width) == (384, 128)
    assert (config.data.num_identities, config.data.num_instances) == (32, 4)
    assert (config.model.alpha, config.model.rho, config.model.attention) == (0.8, 0.25, "cbam")
    assert (config.optim.epochs, config.optim.weight_decay) == (600, 5e-4)


def test_ablation_overlays_compose() -> None:
    config = load_config(["market1501", "ablation_global_drop", "attention_srm"], {"model.rho": 0.5})
    assert (config.model.variant, config.model.attention, config.model.rho) == ("global_drop", "srm", 0.5)
    assert config.data.dataset == "market1501"


@pytest.mark.parametrize(
    ("files", "overrides", "message"),
    [
        (["no_such_config"], {}, "config file not found"),
        ([], {"optim.epochz": 3}, "epochz"),
        ([], {"optim.epochs": "many"}, "many"),
    ],
)
def test_config_errors_name_the_problem(files: list[str], overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(files, overrides)


def test_dotlist_values_are_parsed_as_yaml() -> None:
    config = load_config([], {}, ["optim.base_lr=3e-4", "eval.flip=true", "optim.milestones=[2, 3]"])
    assert (config.optim.base_lr, config.eval.flip, config.optim.milestones) == (3e-4, True, [2, 3])


def test_train_checkpoint_evaluate_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    data_root = tmp_path / "synthetic"
    output_dir = tmp_path / "run"
    common = [  # the default recipe (paper), with a Cutout square that fits 64 x 32
        "--set",
        "data.cutout_size=16",
        "--set",
        "model.backbone=resnet18",
        "--set",
        "data.num_workers=0",
        "--set",
        "optim.warmup_epochs=1",
    ]
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "synthetic",
            "--data-root",
            str(data_root),
            "--output-dir",
            str(output_dir),
            "--epochs",
            "2",
            "--height",
            "64",
            "--width",
            "32",
            "--num-identities",
            "4",
            "--num-instances",
            "2",
            "--no-pretrained",
            "--device",
            "cpu",
            "--no-progress",
            "--set",
            "data.options={num_train_identities: 12, num_test_identities: 6, "
            "images_per_identity_per_camera: 2}",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((output_dir / "metrics.json").read_text())
    for key in ("mAP", "rank1", "rank5", "rank10"):
        assert 0.0 <= metrics[key] <= 100.0
    assert metrics["config"]["data"]["dataset"] == "synthetic"
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["history"][-1]["rank1"] == metrics["rank1"], "the final evaluation closes the history"
    assert (output_dir / "curves.png").read_bytes().startswith(b"\x89PNG")
    checkpoint = load_checkpoint(output_dir / "checkpoint.pt")
    assert checkpoint["completed_epochs"] == 2

    events = EventAccumulator(str(output_dir / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/epoch_loss", "train/lr"} <= set(events.Tags()["scalars"])
    epoch_losses = [event.value for event in events.Scalars("train/epoch_loss")]
    assert epoch_losses == pytest.approx([entry["loss"] for entry in metrics["history"]])

    result = runner.invoke(
        app, ["evaluate", "--checkpoint", str(output_dir / "checkpoint.pt"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    for key in ("mAP", "rank1", "rank5", "rank10"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=0.01)

    shape = ["--set", "data.height=64", "--set", "data.width=32", "--set", "model.pretrained=false"]
    options = (
        "data.options={num_train_identities: 12, num_test_identities: 6, images_per_identity_per_camera: 2}"
    )
    untrained_command = ["evaluate", "--untrained", "--dataset", "synthetic", "--data-root", str(data_root)]
    result = runner.invoke(app, [*untrained_command, *shape, *common, "--set", options, "--no-progress"])
    assert result.exit_code == 0, result.output
    untrained = json.loads(result.output.strip().splitlines()[-1])
    assert untrained.keys() == evaluated.keys() and untrained != evaluated


SYNTHETIC_AT_TMP = ["--dataset", "synthetic", "--data-root", "{tmp}/synthetic"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--dataset", "market1501", "--data-root", "{tmp}/nowhere"], "{tmp}/nowhere"),
        (["evaluate", "--checkpoint", "{tmp}/missing.pt"], "checkpoint not found: {tmp}/missing.pt"),
        (["train", "--config", "no_such_config"], "config file not found"),
        (
            ["train", *SYNTHETIC_AT_TMP, "--device", "cuda", "--no-pretrained"],
            "no CUDA GPU; use --device cpu",
        ),
        (["train", *SYNTHETIC_AT_TMP, "--amp", "fp16", "--no-pretrained"], "amp fp16 needs CUDA"),
        (["evaluate"], "give either --checkpoint FILE or --untrained"),
    ],
)
def test_cli_reports_user_errors_in_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    command = [sys.executable, "-m", "stadb_reid", *(a.format(tmp=tmp_path) for a in arguments)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr


def test_config_choices_are_the_code_s_own() -> None:
    from stadb_layers.create_attention import _ATTENTION_LAYERS
    from stadb_reid.config.schema import AmpMode, AttentionType, DistanceMetric
    from stadb_reid.engine.precision import AMP_MODES
    from stadb_reid.evaluation.distance import Metric

    assert {a.value for a in AttentionType} == set(_ATTENTION_LAYERS)
    assert {m.value for m in DistanceMetric} == set(get_args(Metric))
    assert tuple(m.value for m in AmpMode) == AMP_MODES


def test_config_dicts_hold_plain_strings_and_load_back() -> None:
    config = load_config(["market1501"], {"model.variant": "bdb", "eval.metric": "cosine"})
    plain = config_to_dict(config)
    assert type(plain["model"]["variant"]) is str and plain["model"]["variant"] == "bdb"
    assert json.loads(json.dumps(plain)) == plain
    assert config_to_dict(load_config([], flatten_config(plain))) == plain
