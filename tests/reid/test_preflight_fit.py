"""The config is checked against the data before anything heavy: every problem, in one message."""

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stadb_reid.config import load_config
from stadb_reid.data import ReIDDataset, ReIDSample
from stadb_reid.data.transforms import cutout_side
from stadb_reid.engine import trainer as trainer_module
from stadb_reid.engine.preflight import check_dataset_fits
from stadb_reid.errors import ConfigError

from .test_cli_errors import TINY, assert_one_line_error, run_cli


def offline(*_: Any, **__: Any) -> socket.socket:
    raise OSError("network is unreachable")


def ten_identities(root: Path) -> ReIDDataset:
    """Ten identities of one real 8 x 4 JPEG each, plus a query and a gallery image."""
    for name in [*(f"{i}.jpg" for i in range(10)), "q.jpg", "g.jpg"]:
        Image.new("RGB", (4, 8), (90, 120, 150)).save(root / name)
    train = tuple(ReIDSample(root / f"{i}.jpg", i, 0) for i in range(10))
    query, gallery = ReIDSample(root / "q.jpg", 0, 0), ReIDSample(root / "g.jpg", 0, 1)
    return ReIDDataset("ten", train, (query,), (gallery,))


def test_cutout_scales_with_the_image(tmp_path: Path) -> None:
    assert [cutout_side(height) for height in (384, 256, 128, 64)] == [64, 43, 21, 11]
    assert cutout_side(64, 20) == 20
    for recipe in ("paper", "reference"):
        data = load_config(recipe=recipe).data
        assert data.cutout_size is None and cutout_side(data.height, data.cutout_size) == 64  # as the code
        settings = ["data.height=64", "data.width=32", "data.num_identities=4", "model.pretrained=false"]
        small = load_config(recipe=recipe, dotlist=settings)
        check_dataset_fits(small, ten_identities(tmp_path))  # no Cutout override needed at 64 x 32


def test_every_problem_is_reported_at_once_with_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "create_connection", offline)
    settings = ["data.height=64", "data.width=32", "data.cutout_size=64", "model.pretrained=true"]
    config = load_config(recipe="paper", dotlist=settings)  # P = 32, Cutout on, ImageNet weights
    with pytest.raises(ConfigError) as raised:
        check_dataset_fits(config, ten_identities(tmp_path))
    message = str(raised.value)
    assert "\n" not in message and message.startswith("3 problems")
    for fix in (
        "--set data.cutout_size=null",
        "--set data.cutout_prob=0",
        "--set data.num_identities=10",
        "--no-pretrained",
        "--weights FILE",
    ):
        assert fix in message, fix


def test_unreadable_images_are_one_more_problem_of_the_list(tmp_path: Path) -> None:
    dataset = ten_identities(tmp_path)
    (tmp_path / "3.jpg").write_bytes(b"not a jpeg")
    settings = ["data.height=64", "data.width=32", "data.cutout_size=64", "model.pretrained=false"]
    config = load_config(recipe="paper", dotlist=[*settings, "data.num_identities=4"])
    with pytest.raises(ConfigError) as raised:
        check_dataset_fits(config, dataset)
    message = str(raised.value)
    assert (
        message.startswith("2 problems")
        and "data.cutout_size=64" in message
        and "3.jpg' (not an image)" in message
    )


def test_a_single_problem_is_reported_as_it_is(tmp_path: Path) -> None:
    config = load_config(recipe="paper", dotlist=["data.height=64", "data.width=32", "data.cutout_size=40"])
    config.data.num_identities = 4
    expected = "data.cutout_size=40 does not fit the 64 x 32 images (Cutout would cut nothing)"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_dataset_fits(config, ten_identities(tmp_path))


def test_train_reports_all_problems_before_building_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(socket, "create_connection", offline)

    def no_model(*_: Any, **__: Any) -> None:
        raise AssertionError("the model was built before the checks")

    monkeypatch.setattr(trainer_module, "build_model", no_model)
    arguments = [
        "train", "--dataset", "synthetic", "--data-root", str(tmp_path / "data"), "--output-dir",
        str(tmp_path / "run"), "--height", "64", "--width", "32", "--pretrained", "--no-progress",
        "--set", "data.cutout_size=64", "--set", "data.num_workers=0", "--set", TINY,
    ]  # fmt: skip
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, "3 problems")
    assert "--num-identities" in err and "--no-pretrained" in err and "data.cutout_size" in err
