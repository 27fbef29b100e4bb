"""Hostile settings: config files, ``--set`` overrides and values that would exhaust the machine.

Every case runs ``stadb-reid`` in-process from the test's folder and must exit 2 with one line naming
the file, the override or the key, print no traceback and leave the folder as it was.
"""

from pathlib import Path

import pytest

from stadb_reid.config import load_config
from stadb_reid.config.limits import CONFIG_LIMITS, MAX_BATCH_IMAGES, MAX_BATCH_PIXELS, check_config_limits
from stadb_reid.config.reading import MAX_CONFIG_BYTES
from stadb_reid.engine.preflight import validate_config
from stadb_reid.errors import ConfigError

from .hostile import refused_without_side_effects

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
    for previous, name in zip("abcdefg", "bcdefgh", strict=True)
)

BAD_FILES = {
    "syntax error": (b"data: {height: [1\n", "is not valid YAML: did not find expected ',' or ']'"),
    "unclosed quote": (b'data:\n  root: "abc\n', "is not valid YAML"),
    "bad indentation": (b"data:\n  height: 1\n wrong: 2\n", "is not valid YAML"),
    "duplicate key": (b"seed: 1\nseed: 2\n", "is not valid YAML"),
    "python tag apply": (
        b"data: !!python/object/apply:os.system ['touch pwned']\n",
        "could not determine a constructor for the tag",
    ),
    "python tag name": (b"seed: !!python/name:os.getcwd\n", "could not determine a constructor"),
    "python tag module": (b"seed: !!python/module:os\n", "could not determine a constructor"),
    "top-level list": (b"- data\n- model\n", "must hold a mapping of config keys, got a list"),
    "top-level number": (b"42\n", "must hold a mapping of config keys, got a number"),
    "top-level string": (b"hello\n", "hello: Key 'hello' not in 'Config'"),  # OmegaConf: {hello: None}
    "top-level boolean": (b"true\n", "must hold a mapping of config keys, got a boolean"),
    "invalid UTF-8": (b"data:\n  dataset: \xff\xfe\n", "is not UTF-8 text (byte 17)"),
    "UTF-16": ("seed: 1\n".encode("utf-16"), "is not UTF-8 text"),
    "latin-1": ("data: {root: caf\xe9}\n".encode("latin-1"), "is not UTF-8 text"),
    "empty": (b"", "is empty"),
    "whitespace only": (b"  \n\n", "is empty"),
    "comments only": (b"# nothing here\n", "is empty"),
    "env interpolation": (b"data: {root: '${oc.env:HOME}'}\n", "data.root is an interpolation"),
    "decode interpolation": (b"seed: '${oc.decode:3}'\n", "seed is an interpolation"),
    "key interpolation": (b"seed: 1\noutput_dir: '${seed}'\n", "output_dir is an interpolation"),
    "string interpolation": (b"data: {root: 'a${oc.env:HOME}b'}\n", "data.root is an interpolation"),
    "interpolation in a list": (b"optim: {milestones: ['${oc.env:X}']}\n", "optim.milestones[0]"),
    "alias bomb": (ALIAS_BOMB.encode(), "YAML node expansion exceeds"),
    "deep nesting": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "exceeded maximum nesting depth"),
    "over 1 MiB": (b"# " + b"x" * MAX_CONFIG_BYTES + b"\n", "is larger than 1 MiB"),
    "binary value": (b"data: {root: !!binary aGk=}\n", "data.root"),
    "unknown key": (b"data: {colour: red}\n", "data.colour"),
    "wrong type": (b"data: {height: tall}\n", "data.height"),
}


@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.parametrize("command", ["info", "train"])
def test_a_bad_config_file_is_one_line_naming_it(
    command: str,
    content: bytes,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "bad.yaml").write_bytes(content)
    arguments = [command, "--config", "bad.yaml"]
    if command == "train":
        arguments += ["--dataset", "synthetic", "--data-root", "data", "--output-dir", "run"]
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, "config file 'bad.yaml'", message)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("folder", "config file 'folder' is a directory"),
        ("missing.yaml", "config file not found: missing.yaml"),
        ("/dev/null", "config file '/dev/null' is not a regular file"),
        ("fifo", "config file 'fifo' is not a regular file"),
        ("dangling", "config file not found: dangling"),
    ],
)
def test_a_config_path_that_is_not_a_file_is_named(
    path: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.yaml")
    if hasattr(__import__("os"), "mkfifo"):
        __import__("os").mkfifo(tmp_path / "fifo")  # reading it would block forever
    refused_without_side_effects(["info", "--config", path], tmp_path, monkeypatch, capsys, message)


BAD_OVERRIDES = {
    "unclosed list": ("optim.milestones=[1", "override 'optim.milestones=[1': the value is not valid YAML"),
    "unclosed mapping": ("data.options={a: 1", "the value is not valid YAML"),
    "python tag": ("data.root=!!python/name:os.system", "could not determine a constructor"),
    "python tag apply": ("seed=!!python/object/apply:os.system ['touch pwned']", "could not determine"),
    "env interpolation": ("data.root=${oc.env:HOME}", "override 'data.root=${oc.env:HOME}': data.root is"),
    "nested interpolation": ("data.options={a: '${oc.env:HOME}'}", "data.options.a is an interpolation"),
    "no equals sign": ("optim.epochs", "expected KEY=VALUE, got 'optim.epochs'"),
    "no key": ("=3", "expected KEY=VALUE, got '=3'"),
    "blank key": (" =3", "expected KEY=VALUE"),
    "control characters": ("data.root=\x1b]0;pwned\x07", "data.root=\\x1b]0;pwned\\x07"),
    "newline in the value": ("seed=1\n2", "seed"),
    "unknown key": ("data.colour=red", "data.colour"),
    "float for an int": ("data.height=1e6", "data.height"),
    "NaN for an int": ("data.height=.nan", "data.height"),
    "NaN alpha": ("model.alpha=.nan", "model.alpha must lie in (0.0, 1.0], got nan"),
    "infinite learning rate": ("optim.base_lr=.inf", "optim.base_lr"),
    "NaN rho": ("model.rho=.nan", "model.rho"),
    "list for a number": ("seed=[1]", "seed"),
}


@pytest.mark.parametrize(("setting", "message"), BAD_OVERRIDES.values(), ids=BAD_OVERRIDES.keys())
def test_a_bad_override_is_one_line_naming_it(
    setting: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = refused_without_side_effects(["info", "--set", setting], tmp_path, monkeypatch, capsys, message)
    assert "\x1b" not in line and "\x07" not in line


def test_a_flag_value_is_not_interpolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["train", "--dataset", "folder", "--data-root", "${oc.env:HOME}", "--output-dir", "run"]
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, "data.root is an interpolation")


def over_the_limit() -> dict[str, str]:
    cases = {key: f"{key}={limit + 1}" for key, limit in CONFIG_LIMITS.items() if key != "optim.milestones"}
    cases["optim.milestones"] = f"optim.milestones=[{CONFIG_LIMITS['optim.milestones'] + 1}]"
    return cases


@pytest.mark.parametrize(("key", "setting"), over_the_limit().items(), ids=over_the_limit().keys())
def test_every_bounded_key_is_refused_one_past_its_bound(
    key: str,
    setting: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = f"{key} must be at most {CONFIG_LIMITS[key]}"
    refused_without_side_effects(["info", "--set", setting], tmp_path, monkeypatch, capsys, message)


GIANTS = {
    "height 10^6": (["data.height=1000000"], "data.height must be at most 2048, got 1000000"),
    "width 10^9": (["data.width=1000000000"], "data.width must be at most 2048"),
    "K 10^12": (["data.num_instances=1000000000000"], "data.num_instances must be at most 256"),
    "P 10^8": (["data.num_identities=100000000"], "data.num_identities must be at most 1024"),
    "workers 10^8": (["data.num_workers=100000000"], "data.num_workers must be at most 128"),
    "test batch 10^9": (["data.test_batch_size=1000000000"], "data.test_batch_size must be at most"),
    "epochs 10^12": (["optim.epochs=1000000000000"], "optim.epochs must be at most 100000"),
    "kernel 10^6": (["model.cbam.kernel_size=1000001"], "model.cbam.kernel_size must be at most 63"),
    "seed 10^20": (["seed=100000000000000000000"], "seed must be at most 4294967295"),
    "P x K": (
        ["data.num_identities=1024", "data.num_instances=256"],
        f"262144 images of 384 x 128 is too large: at most {MAX_BATCH_IMAGES} images",
    ),
    "batch pixels": (["data.height=2048", "data.width=2048"], f"{MAX_BATCH_PIXELS:,} pixels"),
    "test batch pixels": (
        ["data.height=2048", "data.width=2048", "data.num_identities=2", "data.test_batch_size=4096"],
        "data.test_batch_size=4096 images of 2048 x 2048",
    ),
}


@pytest.mark.parametrize(("settings", "message"), GIANTS.values(), ids=GIANTS.keys())
@pytest.mark.parametrize("command", ["info", "train"])
def test_train_and_info_refuse_sizes_that_would_exhaust_the_machine_before_allocating(
    command: str,
    settings: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = [command, *(part for setting in settings for part in ("--set", setting))]
    if command == "train":  # the dataset would be generated and the run written here: neither may be
        arguments += ["--dataset", "synthetic", "--data-root", "data", "--output-dir", "run"]
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, message)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--height", "1000000", "data.height must be at most 2048"),
        ("--width", "-32", "data.width must be an integer >= 16, got -32"),
        ("--num-instances", "1000000000000", "data.num_instances must be at most 256"),
        ("--num-identities", "100000000", "data.num_identities must be at most 1024"),
        ("--epochs", "1000000000000", "optim.epochs must be at most 100000"),
        ("--seed", "100000000000000000000", "seed must be at most 4294967295"),
    ],
)
def test_the_named_flags_of_train_have_the_same_bounds(
    flag: str,
    value: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["train", flag, value, "--dataset", "synthetic", "--data-root", "data", "--output-dir", "run"]
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, message)


def test_the_bounds_themselves_are_accepted() -> None:
    at_limit = {key: limit for key, limit in CONFIG_LIMITS.items() if key != "optim.milestones"}
    at_limit |= {"data.num_identities": 16, "data.num_instances": 4, "data.test_batch_size": 64}
    config = load_config(overrides={**at_limit, "optim.milestones": [CONFIG_LIMITS["optim.milestones"]]})
    assert validate_config(config) is config  # 2048 x 2048 with 16 x 4 images is exactly 2^28 pixels
    with pytest.raises(ConfigError, match="too large"):
        check_config_limits(load_config(overrides={**at_limit, "data.num_instances": 5}))
