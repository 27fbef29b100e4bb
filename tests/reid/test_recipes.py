"""The two recipes, the configs on top of them, ``stadb-reid info``, and the paper-fidelity page's tables.

The page's value columns and parameter counts are checked against the configs here, so they cannot
drift from what a run gets.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from stadb_reid.commands.info import num_classes_of, parameter_count
from stadb_reid.config import Config, available_recipes, bundled_configs, config_to_dict, load_config
from stadb_reid.config.files import (
    CONFIG_DIR,
    DEFAULT_RECIPE,
    RECIPE_DIR,
    flatten_config,
    resolve_config_path,
)
from stadb_reid.engine import build_model
from stadb_reid.engine.preflight import validate_config
from stadb_reid.errors import ConfigError

from .test_cli_errors import assert_one_line_error, run_cli

FIDELITY = Path(__file__).resolve().parents[2] / "docs" / "paper-fidelity.md"
RECIPES = available_recipes()
DATASETS = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
ABLATIONS = sorted(path.stem for path in (CONFIG_DIR / "ablations").glob("*.yaml"))
# The names configs had before they moved to configs/ablations; commands and docs still use them.
OLD_NAMES = [
    "ablation_global",
    "ablation_global_drop",
    "ablation_global_attention",
    "attention_se",
    "attention_srm",
    "attention_triplet",
    "bdb",
]


def markdown_table(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header line starts with ``header_start``, by column name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)))
    return rows


def parse_yaml(text: str) -> Any:
    """A YAML mapping as plain Python values, read by OmegaConf's loader as the config files are."""
    return OmegaConf.to_container(OmegaConf.create(text))


def setting(config_dict: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config_dict = config_dict[part]
    return config_dict


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Tiny tensors: more threads only contend for the few cores a test machine shares.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_recipes_and_the_paper_is_the_default() -> None:
    assert RECIPES == ["defaults", "paper", "reference"]
    assert DEFAULT_RECIPE == "paper"


def test_the_defaults_recipe_is_the_schema_and_reproduces_the_earlier_runs() -> None:
    assert load_config(["viper"], recipe="defaults") == load_config(["viper"])


def test_recipes_differ_only_in_epochs_and_test_time_attention() -> None:
    paper, reference = (
        flatten_config(config_to_dict(load_config(recipe=name))) for name in ("paper", "reference")
    )
    assert {key for key in paper if paper[key] != reference[key]} == {"optim.epochs", "model.eval_attention"}


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_config_builds_under_every_recipe(dataset: str, recipe: str) -> None:
    config = validate_config(load_config([dataset], recipe=recipe))
    assert parameter_count(config, num_classes_of(config.data)) > 20_000_000


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_is_valid_under_every_recipe(ablation: str, recipe: str) -> None:
    # Each is also built, and its parameter count checked, by test_fidelity_parameter_counts_are_the_networks.
    validate_config(load_config(["market1501", ablation], recipe=recipe))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("recipe", "overlays"),
    [
        ("reference", []),
        ("paper", ["bdb"]),
        ("reference", ["ablation_global_attention", "ablation_sta_sa"]),
        ("paper", ["ablation_drop_only"]),
    ],
)
def test_networks_run_at_64_x_32(recipe: str, overlays: list[str]) -> None:
    # ResNet-18 keeps this fast; the heads, the drop and CBAM's options are the recipe's.
    small = {
        "data.height": 64,
        "data.width": 32,
        "data.cutout_size": 16,
        "model.backbone": "resnet18.tv_in1k",
        "model.pretrained": False,
    }
    config = validate_config(load_config(["market1501", *overlays], small, recipe=recipe))
    model = build_model(config, num_classes=5)
    images = torch.randn(2, 3, 64, 32)
    features, logits = model.train()(images)
    assert [tuple(scores.shape) for scores in logits] == [(2, 5)] * len(features)
    assert tuple(model.eval()(images).shape) == (2, model.embedding_dim)


def test_the_demo_is_the_same_run_under_every_recipe() -> None:
    without = load_config(["demo_cpu"])
    assert all(load_config(["demo_cpu"], recipe=recipe) == without for recipe in RECIPES)


def test_dataset_configs_hold_dataset_facts_only() -> None:
    # The real datasets' configs: the recipe decides how to train (VIPeR and the demo set a budget).
    for name in ("market1501", "dukemtmc", "cuhk03_labeled", "cuhk03_detected", "msmt17", "celeb_reid"):
        content = parse_yaml(resolve_config_path(name).read_text(encoding="utf-8"))
        assert set(flatten_config(content)) <= {"data.dataset", "data.root", "data.options", "device"}, name


def test_old_names_and_new_ones_resolve() -> None:
    assert all(resolve_config_path(name).parent.name == "ablations" for name in OLD_NAMES)
    assert resolve_config_path("rho_0.50").name == "rho_0.50.yaml"
    assert resolve_config_path("market1501.yaml") == CONFIG_DIR / "market1501.yaml"
    assert len(set(bundled_configs())) == len(bundled_configs()) == len(DATASETS) + len(ABLATIONS)
    with pytest.raises(ConfigError, match="config file not found: paper"):
        resolve_config_path("paper")  # a recipe is not an overlay


def test_unknown_recipe_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'bogus': expected defaults or paper or reference"):
        load_config(["market1501"], recipe="bogus")


# ----------------------------------------------------------------------------- the command line
@pytest.mark.parametrize(
    "command", [["train", "--dataset", "market1501"], ["evaluate", "--untrained"], ["info"]]
)
def test_unknown_recipe_is_one_line(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli([*command, "--config", "market1501", "--recipe", "bogus"], monkeypatch, capsys)
    assert_one_line_error(code, err, "--recipe: expected defaults or paper or reference, got 'bogus'")


@pytest.mark.parametrize(("recipe", "epochs"), [(None, 600), ("paper", 600), ("reference", 400)])
def test_train_and_untrained_evaluation_take_the_recipe(
    recipe: str | None, epochs: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import stadb_reid.commands.evaluate
    import stadb_reid.engine

    seen: list[Config] = []

    def record(config: Config, **_: object) -> dict[str, float]:  # stands in for train and evaluate
        seen.append(config)
        return {}

    monkeypatch.setattr(stadb_reid.engine, "train", record)
    monkeypatch.setattr(stadb_reid.commands.evaluate, "evaluate_untrained", record)
    option = ["--recipe", recipe] if recipe else []
    assert run_cli(["train", "--config", "market1501", *option], monkeypatch, capsys)[0] == 0
    assert (
        run_cli(["evaluate", "--untrained", "--config", "market1501", *option], monkeypatch, capsys)[0] == 0
    )
    assert [config.optim.epochs for config in seen] == [epochs, epochs]
    assert seen[0].model.eval_attention == (recipe != "reference")


def test_a_checkpoint_refuses_a_recipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["evaluate", "--checkpoint", "run.pt", "--recipe", "paper"], monkeypatch, capsys)
    assert_one_line_error(code, err, "a checkpoint carries its config")


@pytest.mark.parametrize("recipe", RECIPES)
def test_info_prints_a_config_that_loads_back(
    recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["info", "--config", "market1501", "--config", "bdb", "--recipe", recipe, "--set", "seed=3"]
    code, out, err = run_cli(arguments, monkeypatch, capsys)
    assert code == 0, err
    expected = load_config(["market1501", "bdb"], {"seed": 3}, recipe=recipe)
    assert parse_yaml(out) == config_to_dict(expected)
    (tmp_path / "resolved.yaml").write_text(out, encoding="utf-8")
    assert load_config([tmp_path / "resolved.yaml"]) == expected
    lines = out.splitlines()
    assert lines[0] == f"# recipe: {recipe}"
    assert lines[-1] == f"# parameters: {parameter_count(expected, 751):,} (32.28 M) for 751 classes"


def test_info_counts_the_dataset_classes_or_the_given_number(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_cli(["info", "--config", "demo_cpu"], monkeypatch, capsys)[1]
    assert out.splitlines()[-1].endswith(" for 48 classes")
    out = run_cli(["info", "--config", "viper", "--num-classes", "10"], monkeypatch, capsys)[1]
    assert out.splitlines()[-1].endswith(" for 10 classes")
    code, _, err = run_cli(["info", "--set", "data.dataset=folder"], monkeypatch, capsys)
    assert_one_line_error(code, err, "pass --num-classes N")


# ------------------------------------------------------------------------ docs/paper-fidelity.md
def test_fidelity_settings_are_the_configs_values() -> None:
    rows = markdown_table(FIDELITY.read_text(encoding="utf-8"), "| knob |")
    columns = {"`reference`": "reference", "`paper`": "paper", "no recipe": None}
    resolved = {column: config_to_dict(load_config(recipe=recipe)) for column, recipe in columns.items()}
    for row in rows:
        key = row["knob"].strip("`")
        for column, config in resolved.items():
            cell = parse_yaml(f"value: {row[column].strip('`')}")["value"]
            assert cell == setting(config, key), (key, column)
    recipe_keys = set()
    for path in RECIPE_DIR.glob("*.yaml"):
        recipe_keys |= set(flatten_config(parse_yaml(path.read_text(encoding="utf-8")))) - {"extends"}
    assert recipe_keys <= {row["knob"].strip("`") for row in rows}


def test_fidelity_parameter_counts_are_the_networks() -> None:
    page = FIDELITY.read_text(encoding="utf-8")
    documented = re.search(r"both recipes build ([\d,]+) parameters", page)
    assert documented is not None
    for recipe in ("paper", "reference"):
        count = parameter_count(load_config(["market1501"], recipe=recipe), 751)
        assert count == int(documented[1].replace(",", ""))
    readme = " ".join((FIDELITY.parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert f"both build {count / 1e6:.2f} M parameters for Market-1501" in readme
    # The recipes share the architecture (test_recipes_differ_only_in_epochs_and_test_time_attention).
    listed = set()
    for row in markdown_table(page, "| paper table |"):
        overlays = re.findall(r"`([^`]+)`", row["configs"]) or [None]
        listed |= set(overlays) - {None}
        for overlay in overlays:
            config = load_config(["market1501", *([overlay] if overlay else [])], recipe="reference")
            assert f"{parameter_count(config, 751) / 1e6:.2f} M" == row["parameters (751 classes)"], overlay
    assert listed == set(ABLATIONS)
