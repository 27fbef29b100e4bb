"""One way to change settings: dotted keys through stadb_reid.config.Overrides, flags through FLAG_KEYS."""

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import stadb_reid
from stadb_reid.cli import app
from stadb_reid.config import Config, Overrides, config_to_dict, load_config
from stadb_reid.config.files import flatten_config
from stadb_reid.config.overrides import FLAG_KEYS
from stadb_reid.errors import ConfigError

PACKAGE = Path(stadb_reid.__file__).parent
CONFIG_LAYER = PACKAGE / "config"
SCHEMA_KEYS = set(flatten_config(config_to_dict(Config())))
DOTTED_KEYS = {key for key in SCHEMA_KEYS if "." in key}

# Where a string literal builds or reads overrides of its own: a dict key, ``in``, a subscript, a
# mapping method's key.
_KEY_METHODS = {"get", "pop", "setdefault", "update"}


def overriding_literals(source: str) -> list[tuple[int, str]]:
    """``(line, key)`` of each dotted config key spelt as a string where overrides are built or read."""
    places: list[ast.expr | None] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            places += node.keys
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            places.append(node.left)
        elif isinstance(node, ast.Subscript) and getattr(node.value, "id", None) != "CONFIG_LIMITS":
            places.append(node.slice)  # reading a key's bound from CONFIG_LIMITS overrides nothing
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in _KEY_METHODS:
            places += node.args[:2]
    return sorted(
        (place.lineno, place.value)
        for place in places
        if isinstance(place, ast.Constant) and place.value in DOTTED_KEYS
    )


def test_only_the_config_layer_spells_config_keys_to_override_them() -> None:
    found = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if CONFIG_LAYER not in path.parents
        and (hits := overriding_literals(path.read_text(encoding="utf-8")))
    }
    assert found == {}, "build settings with stadb_reid.config.Overrides (flags: FLAG_KEYS)"


@pytest.mark.parametrize(
    "source",
    [
        'overrides = {"data.root": root, "device": device}',
        'dataset = overrides.get("data.dataset")',
        'if "data.dataset" in keys: pass',
        'overrides["data.options"] = {}',
    ],
)
def test_the_rule_sees_hand_built_overrides(source: str) -> None:
    assert overriding_literals(source), source


def test_flag_keys_name_schema_keys() -> None:
    assert set(FLAG_KEYS.values()) <= SCHEMA_KEYS
    assert len(set(FLAG_KEYS.values())) == len(FLAG_KEYS)  # one flag per key


def test_flags_become_their_keys_and_unset_flags_change_nothing() -> None:
    flags = Overrides.from_flags(data_root=Path("data/market"), device=None, flip=False)
    assert flags.assignments == (("data.root", "data/market"), ("eval.flip", False))
    assert not Overrides.from_flags(dataset=None, device=None)
    with pytest.raises(TypeError, match="not a convenience flag of FLAG_KEYS: colour"):
        Overrides.from_flags(colour="red")


@pytest.mark.parametrize("pair", ["optim.epochs", "=3", " =3", ""])
def test_a_setting_without_key_or_value_is_refused(pair: str) -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        Overrides.parse([pair])


def test_set_values_are_yaml_and_later_ones_win() -> None:
    overrides = Overrides.parse(["optim.base_lr=3e-4", "optim.milestones=[2, 3]", "data.cutout_size=null"])
    config = (overrides | Overrides.of({"optim.base_lr": 1e-3})).applied_to(Config())
    assert (config.optim.base_lr, config.optim.milestones, config.data.cutout_size) == (1e-3, [2, 3], None)


def test_a_value_that_is_not_yaml_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"override 'optim.milestones=\[1': the value is not valid YAML"):
        Overrides.parse(["optim.milestones=[1"])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_a_flag_a_set_pair_and_a_mapping_are_one_override(seed: int, flip: bool) -> None:
    by_flags = Overrides.from_flags(seed=seed, flip=flip).applied_to(Config())
    by_set = Overrides.parse([f"seed={seed}", f"eval.flip={str(flip).lower()}"]).applied_to(Config())
    assert by_flags == by_set == load_config([], {"seed": seed, "eval.flip": flip})


def test_another_dataset_drops_the_options_of_the_one_underneath() -> None:
    labeled = load_config(["cuhk03_labeled"])
    assert labeled.data.options == {"labeled": True}
    assert load_config(["cuhk03_labeled"], Overrides.from_flags(dataset="CUHK03")).data.options == {
        "labeled": True
    }
    other = Overrides.parse(["data.dataset=market1501"]) | Overrides.parse(["data.options={split: 2}"])
    assert other.applied_to(labeled).data.options == {"split": 2}
    merged = Overrides.parse(["data.options={split: 2}"]).applied_to(labeled).data.options
    assert merged == {"labeled": True, "split": 2}  # a mapping merges, as in config files


def test_unknown_keys_and_wrong_types_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.bogus: Key 'bogus' not in 'DataConfig'"):
        Overrides.of({"data.bogus": 1}).applied_to(Config())
    with pytest.raises(ConfigError, match=r"model\.alpha: Value 'x'"):
        Overrides.parse(["model.alpha=x"]).applied_to(Config())


# Every convenience flag of the commands that change settings: its arguments and the value it sets.
SAMPLES: dict[str, tuple[list[str], Any]] = {
    "dataset": (["--dataset", "market1501"], "market1501"),
    "data_root": (["--data-root", "elsewhere"], "elsewhere"),
    "output_dir": (["--output-dir", "out"], "out"),
    "epochs": (["--epochs", "7"], 7),
    "height": (["--height", "96"], 96),
    "width": (["--width", "48"], 48),
    "num_identities": (["--num-identities", "5"], 5),
    "num_instances": (["--num-instances", "3"], 3),
    "pretrained": (["--no-pretrained"], False),
    "weights": (["--weights", "w.pth"], "w.pth"),
    "device": (["--device", "cuda"], "cuda"),
    "variant": (["--variant", "bdb"], "bdb"),
    "attention": (["--attention", "se"], "se"),
    "alpha": (["--alpha", "0.5"], 0.5),
    "rho": (["--rho", "0.5"], 0.5),
    "seed": (["--seed", "7"], 7),
    "amp": (["--amp", "bf16"], "bf16"),
    "channels_last": (["--channels-last"], True),
    "compile": (["--compile"], True),
    "deterministic": (["--deterministic"], True),
    "eval_every": (["--eval-every", "2"], 2),
    "ap_at": (["--ap-at", "5"], 5),
    "flip": (["--flip"], True),
    "rerank": (["--rerank"], True),
}
COMMAND_FLAGS = {
    "train": [flag for flag in SAMPLES if flag != "rerank"],
    "demo": ["output_dir", "epochs"],
    "evaluate --untrained": ["dataset", "data_root", "device", "flip", "rerank", "ap_at"],
    "evaluate --checkpoint c.pt": ["dataset", "data_root", "device", "flip", "rerank", "ap_at"],
    "visualize --checkpoint c.pt": ["dataset", "data_root", "device"],
    "export --checkpoint c.pt --verify": ["dataset", "data_root"],
}


def test_samples_cover_the_table() -> None:
    assert set(SAMPLES) == set(FLAG_KEYS)


@pytest.mark.parametrize("command", list(COMMAND_FLAGS))
def test_each_command_s_flags_reach_their_keys(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Config] = []

    def keep(config: Config, *_: object, **__: object) -> dict[str, float]:
        seen.append(config)
        return {}

    def keep_overrides(returned: object) -> Any:
        def run(*args: object, **keywords: object) -> object:
            (overrides,) = (a for a in [*args, *keywords.values()] if isinstance(a, Overrides))
            seen.append(overrides.applied_to(Config()))
            return returned

        return run

    monkeypatch.chdir(tmp_path)
    # any value reaches
    monkeypatch.setattr("stadb_reid.engine.preflight.validate_config", lambda config: config)
    monkeypatch.setattr("stadb_reid.engine.train", keep)
    monkeypatch.setattr("stadb_reid.commands.run_demo", keep)
    monkeypatch.setattr("stadb_reid.commands.evaluate.evaluate_untrained", keep)
    monkeypatch.setattr("stadb_reid.commands.evaluate_checkpoint", keep_overrides({}))
    monkeypatch.setattr("stadb_reid.commands.visualize_checkpoint", keep_overrides([]))
    monkeypatch.setattr("stadb_reid.commands.export_checkpoint", lambda *_, **__: tmp_path / "c.onnx")
    monkeypatch.setattr(
        "stadb_reid.commands.verify.verify_export", keep_overrides(SimpleNamespace(lines=list))
    )
    flags = COMMAND_FLAGS[command]
    arguments = [*command.split(), *(argument for flag in flags for argument in SAMPLES[flag][0])]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    (config,) = seen
    found = flatten_config(config_to_dict(config))
    assert {FLAG_KEYS[flag]: found[FLAG_KEYS[flag]] for flag in flags} == {
        FLAG_KEYS[flag]: SAMPLES[flag][1] for flag in flags
    }
