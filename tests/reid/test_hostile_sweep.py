"""Hostile sweeps: grid files, ``--jobs``/``--threads`` and damaged ``record.json`` files.

Every case runs ``stadb-reid sweep`` in-process and must exit 2 with one line naming the grid file,
the option or the record (and the key at fault), print no traceback, start no run and change nothing.
"""

import json
from pathlib import Path

import pytest

from stadb_reid.commands.sweep import sweep
from stadb_reid.commands.sweep.grid import RunSpec
from stadb_reid.engine.run_folder import RECORD_NAME
from stadb_reid.errors import ConfigError

from .hostile import refused_without_side_effects, run_cli, snapshot

GOOD_RUNS = "runs: {a: {}, b: {config: [x]}}\n"


def grid_cases() -> dict[str, tuple[str, str]]:
    """Grid file text and the words its message must hold."""
    seeds = {
        "seeds true": ("[true]", "seeds must be a non-empty list of non-negative integers"),
        "seeds false": ("[false]", "got [False]"),
        "seeds float": ("[1.0]", "got [1.0]"),
        "seeds fraction": ("[0.5]", "non-negative integers"),
        "seeds string": ("['1']", "got ['1']"),
        "seeds negative": ("[-1]", "non-negative integers"),
        "seeds past 2^32": ("[4294967296]", "at most 4294967295"),
        "seeds empty": ("[]", "non-empty list"),
        "seeds scalar": ("0", "got 0"),
        "seeds mapping": ("{a: 0}", "non-empty list"),
        "seeds nested": ("[[0]]", "got [[0]]"),
        "seeds null": ("null", "got None"),
        "seeds repeated": ("[0, 0]", "seeds must not repeat"),
    }
    cases = {name: (f"seeds: {value}\n{GOOD_RUNS}", message) for name, (value, message) in seeds.items()}
    cases |= {
        "name list": (f"name: [1]\n{GOOD_RUNS}", "name must be a non-empty string, got [1]"),
        "name bool": (f"name: true\n{GOOD_RUNS}", "name must be a non-empty string, got True"),
        "name empty": (f"name: ''\n{GOOD_RUNS}", "name must be a non-empty string"),
        "config number": (f"config: [1]\n{GOOD_RUNS}", "config must be a list of strings"),
        "config empty string": (f"config: ['']\n{GOOD_RUNS}", "config must be a list of strings"),
        "config mapping": (f"config: {{a: b}}\n{GOOD_RUNS}", "config must be a list of strings"),
        "set without =": (f"set: [optim.epochs]\n{GOOD_RUNS}", "set: expected KEY=VALUE, got 'optim.epochs'"),
        "set without key": (f"set: ['=3']\n{GOOD_RUNS}", "expected KEY=VALUE"),
        "set null": (f"set: [null]\n{GOOD_RUNS}", "set must be a list of strings"),
        "run set number": ("runs: {a: {set: [3]}}\n", "runs.a.set must be a list of strings"),
        "runs list": ("runs: [a, b]\n", "runs must map run names"),
        "runs empty": ("runs: {}\n", "runs must map run names"),
        "runs missing": ("seeds: [0]\n", "runs must map run names"),
        "run name space": ("runs: {'a b': {}}\n", "run name 'a b' must be letters"),
        "run name slash": ("runs: {'../x': {}}\n", "run name '../x' must be letters"),
        "run name long": (f"runs: {{{'a' * 65}: {{}}}}\n", "must be letters, digits, - and _ (at most 64)"),
        "run name number": ("runs: {1: {}}\n", "run name 1 must be letters"),
        "run list": ("runs: {a: [x]}\n", "runs.a takes only config and set"),
        "run unknown key": ("runs: {a: {seed: 1}}\n", "runs.a takes only config and set"),
        "compare string": (f"compare: a\n{GOOD_RUNS}", "compare must be a list of pairs"),
        "compare single": (f"compare: [[a]]\n{GOOD_RUNS}", "pairs of run names"),
        "compare itself": (f"compare: [[a, a]]\n{GOOD_RUNS}", "pairs of run names (two different ones)"),
        "compare unknown": (f"compare: [[a, z]]\n{GOOD_RUNS}", "got ['a', 'z']"),
        "compare triple": (f"compare: [[a, b, a]]\n{GOOD_RUNS}", "pairs of run names"),
        "recipe unknown": (f"recipe: nope\n{GOOD_RUNS}", "recipe must be one of defaults, paper, reference"),
        "recipe number": (f"recipe: 3\n{GOOD_RUNS}", "got 3"),
        "seed_keys number": (f"seed_keys: [1]\n{GOOD_RUNS}", "seed_keys must be a list of strings"),
        "seed_keys setting": (f"seed_keys: ['seed=1']\n{GOOD_RUNS}", "seed_keys are config keys"),
        "unknown key": (f"seeds: [0]\nseed: [1]\n{GOOD_RUNS}", "unknown key 'seed'"),
        "syntax error": ("runs: {a: [\n", "is not valid YAML"),
        "python tag": (f"name: !!python/object/apply:os.system ['touch pwned']\n{GOOD_RUNS}", "constructor"),
        "top-level list": ("- a\n- b\n", "must hold a mapping"),
        "top-level number": ("7\n", "must hold a mapping"),
        "empty": ("", "is empty"),
        "comments only": ("# a grid\n", "is empty"),
        "interpolation": (f"name: ${{oc.env:HOME}}\n{GOOD_RUNS}", "name is an interpolation"),
        "interpolation in set": (
            f"set: ['data.root=${{oc.env:HOME}}']\n{GOOD_RUNS}",
            "set[0] is an interpolation",
        ),
    }
    return cases


@pytest.mark.parametrize(("content", "message"), grid_cases().values(), ids=grid_cases().keys())
@pytest.mark.parametrize("mode", ["run", "report-only"])
def test_a_bad_grid_is_one_line_naming_the_file_and_the_key(
    mode: str,
    content: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "grid.yaml").write_text(content)
    arguments = ["sweep", "grid.yaml", "--output-dir", "out", *(["--report-only"] if mode != "run" else [])]
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, "grid.yaml", message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"runs: {a: {}}\nname: \xff\n", "is not UTF-8 text"),
        ("runs: {a: {}}\n".encode("utf-16"), "is not UTF-8 text"),
        (b"name: " + b"x" * (1 << 20) + b"\nruns: {a: {}}\n", "is larger than 1 MiB"),
        (b"runs: " + b"[" * 5000 + b"]" * 5000 + b"\n", "exceeded maximum nesting depth"),
    ],
    ids=["invalid UTF-8", "UTF-16", "over 1 MiB", "deep nesting"],
)
def test_a_grid_that_is_not_yaml_text_is_named(
    content: bytes,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "grid.yaml").write_bytes(content)
    arguments = ["sweep", "grid.yaml", "--output-dir", "out"]
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, "'grid.yaml'", message)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("folder", "sweep grid 'folder' is a directory"),
        ("/dev/null", "sweep grid '/dev/null' is not a regular file"),
        ("nope.yaml", "sweep grid not found: nope.yaml"),
        ("sub/nope.yaml", "sweep grid not found: sub/nope.yaml"),
    ],
)
def test_a_grid_path_that_is_not_a_file_is_named(
    grid: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "folder").mkdir()
    refused_without_side_effects(
        ["sweep", grid, "--output-dir", "out"], tmp_path, monkeypatch, capsys, message
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--threads", "-3"),
        ("--threads", "0"),
        ("--threads", "1025"),
        ("--threads", "100000000000000000000"),
        ("--threads", "1.5"),
        ("--threads", "two"),
        ("--threads", ""),
        ("--jobs", "0"),
        ("--jobs", "-1"),
        ("--jobs", "257"),
        ("--recipe", "nope"),
        ("--recipe", ""),
    ],
)
def test_threads_jobs_and_recipe_are_checked_before_anything_runs(
    option: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "grid.yaml").write_text(GOOD_RUNS)
    arguments = ["sweep", "grid.yaml", "--output-dir", "out", option, value]
    culprit = "--recipe must be one of" if option == "--recipe" else f"Invalid value for '{option}'"
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, culprit)


@pytest.mark.parametrize(
    ("jobs", "threads", "message"),
    [
        (1, -3, "--threads must be an integer from 1 to 1024, got -3"),
        (1, 0, "--threads must be an integer from 1 to 1024, got 0"),
        (1, True, "--threads must be an integer from 1 to 1024, got True"),
        (1, 2.0, "got 2.0"),
        (1, "4", "got '4'"),
        (0, None, "--jobs must be an integer from 1 to 256, got 0"),
        (False, None, "--jobs must be an integer"),
    ],
)
def test_the_sweep_function_checks_jobs_and_threads_before_anything_runs(
    jobs: object, threads: object, message: str, tmp_path: Path
) -> None:
    (tmp_path / "grid.yaml").write_text(GOOD_RUNS)
    program = ["/bin/sh", "-c", f"touch {tmp_path / 'ran'}"]  # would leave a trace if started
    with pytest.raises(ConfigError, match=message):
        sweep(tmp_path / "grid.yaml", tmp_path / "out", jobs=jobs, threads=threads, program=program)  # type: ignore[arg-type]
    assert sorted(snapshot(tmp_path)) == ["grid.yaml"]


def finished_record(name: str) -> dict[str, object]:
    """The record a finished run ``name`` at seed 0 of the grid below leaves in ``out/NAME/seed0``."""
    arguments = RunSpec(name, 0, (), ()).train_arguments(Path("out"))
    return {
        "name": name,
        "seed": 0,
        "arguments": arguments[1:],
        "command": "stadb-reid " + " ".join(arguments),
        "metrics": {"rank1": 50.0, "rank5": 60.0, "rank10": 70.0, "mAP": 40.0, "mINP": 10.0},
        "config": {},
        "git": None,
        "wall_seconds": 1.0,
        "train_images_per_second": None,
    }


def spoiled(**changes: object) -> bytes:
    """Run b's record with ``changes`` (``DROP`` removes a key), as JSON."""
    record = {**finished_record("b"), **changes}
    return json.dumps({key: value for key, value in record.items() if value != "DROP"}).encode()


METRICS = finished_record("b")["metrics"]
assert isinstance(METRICS, dict)
BAD_RECORDS = {
    "garbage": (b"\x00\x01garbage{", "is not valid JSON"),
    "truncated": (spoiled()[:40], "is not valid JSON"),
    "empty": (b"", "is not valid JSON"),
    "a list": (b"[1, 2, 3]", "must hold a JSON object, got list"),
    "a number": (b"3", "must hold a JSON object, got int"),
    "null": (b"null", "must hold a JSON object, got NoneType"),
    "not UTF-8": (b'{"name": "\xff"}', "is not UTF-8 text (byte 10)"),
    "UTF-16": (spoiled().decode().encode("utf-16"), "is not UTF-8 text"),
    "NaN literal": (spoiled().replace(b"50.0", b"NaN"), "NaN is not a JSON number"),
    "Infinity literal": (spoiled().replace(b"50.0", b"-Infinity"), "-Infinity is not a JSON number"),
    "huge number": (spoiled().replace(b"50.0", b"1e999"), "metrics.rank1 must be a finite number, got inf"),
    "deep nesting": (b"[" * 100000 + b"]" * 100000, "is not valid JSON"),
    "no name": (spoiled(name="DROP"), "name must be str, got None"),
    "name a number": (spoiled(name=3), "name must be str, got 3"),
    "seed a string": (spoiled(seed="0"), "seed must be int, got '0'"),
    "seed a bool": (spoiled(seed=False), "seed must be int, got False"),
    "seed a float": (spoiled(seed=0.0), "seed must be int, got 0.0"),
    "no metrics": (spoiled(metrics="DROP"), "metrics must be dict"),
    "metrics a list": (spoiled(metrics=[1]), "metrics must be dict, got [1]"),
    "metric a string": (spoiled(metrics={**METRICS, "mAP": "high"}), "metrics.mAP must be a finite number"),
    "metric a bool": (spoiled(metrics={**METRICS, "rank5": True}), "metrics.rank5 must be a finite number"),
    "arguments a string": (spoiled(arguments="train"), "arguments must be list"),
    "no command": (spoiled(command="DROP"), "command must be str"),
    "git a list": (spoiled(git=[]), "git must be dict or null"),
    "wall time a string": (spoiled(wall_seconds="1"), "wall_seconds must be int or float"),
    "images per second a bool": (spoiled(train_images_per_second=True), "train_images_per_second must be"),
    "another run": (spoiled(name="a"), "is the record of run 'a' seed 0, not of 'b' seed 0"),
    "another seed": (spoiled(seed=7), "is the record of run 'b' seed 7"),
    "escape in the name": (spoiled(name="\x1b]0;x\x07"), "\\x1b]0;x\\x07"),
    "another command line": (spoiled(arguments=["train"]), "records another command line"),
}


@pytest.mark.parametrize(("content", "message"), BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
@pytest.mark.parametrize("mode", ["run", "report-only"])
def test_a_damaged_record_is_one_line_naming_it(
    mode: str,
    content: bytes,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "grid.yaml").write_text("name: g\nseeds: [0]\nruns: {a: {}, b: {}}\n")
    for name, text in (("a", json.dumps(finished_record("a")).encode()), ("b", content)):
        (tmp_path / "out" / name / "seed0").mkdir(parents=True)
        (tmp_path / "out" / name / "seed0" / RECORD_NAME).write_bytes(text)
    # a's record is sound, b's is not: the sweep neither reruns b nor reports a alone
    arguments = ["sweep", "grid.yaml", "--output-dir", "out", *(["--report-only"] if mode != "run" else [])]
    culprit = str(Path("out/b/seed0") / RECORD_NAME)
    refused_without_side_effects(arguments, tmp_path, monkeypatch, capsys, culprit, message)


def test_a_record_that_is_a_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "grid.yaml").write_text("name: g\nseeds: [0]\nruns: {a: {}}\n")
    (tmp_path / "out" / "a" / "seed0" / RECORD_NAME).mkdir(parents=True)
    arguments = ["sweep", "grid.yaml", "--output-dir", "out", "--report-only"]
    refused_without_side_effects(
        arguments, tmp_path, monkeypatch, capsys, "cannot read sweep record", "directory"
    )


def test_sound_records_give_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The control case of the two above: with b's record sound, the same command reports both runs.
    (tmp_path / "grid.yaml").write_text("name: g\nseeds: [0]\nruns: {a: {}, b: {}}\ncompare: [[a, b]]\n")
    for name in ("a", "b"):
        (tmp_path / "out" / name / "seed0").mkdir(parents=True)
        (tmp_path / "out" / name / "seed0" / RECORD_NAME).write_text(json.dumps(finished_record(name)))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        ["sweep", "grid.yaml", "--output-dir", "out", "--report-only"], monkeypatch, capsys
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [setting["name"] for setting in report["settings"]] == ["a", "b"]
