"""A model folder is untrusted input: every hostile ``config.yaml`` or weights file is refused in one line.

Each case edits one value of a tiny model folder's ``config.yaml`` or one tensor of its
``model.safetensors``, then loads it through every surface that reads a model folder: the API
(:meth:`STADBNet.from_pretrained`, :class:`ReIDExtractor`) raises :class:`ModelFolderError`, and the
commands ``extract``, ``index`` and ``search`` exit with status 2 and one ``error:`` line naming the
file and the key or tensor, without a traceback, leaving every file as it was.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from stadb_reid.commands import index_gallery
from stadb_reid.errors import ModelFolderError
from stadb_reid.inference import ReIDExtractor
from stadb_reid.model import STADBNet
from stadb_reid.model.folder import read_model_config
from stadb_reid.model.folder.footprint import MAX_FEATURE_MAP_BYTES, MAX_WEIGHT_BYTES
from stadb_reid.model.folder.names import CONFIG_NAME, WEIGHTS_NAME

from .test_cli_errors import run_cli
from .test_export import HEIGHT, WIDTH, random_images, tiny_config
from .test_model_folder import tiny_network, write_folder
from .test_search import write_people

SECRET_VARIABLE, SECRET = "STADB_HOSTILE_SECRET", "hunter2-must-not-leak"
NAN, INF = math.nan, math.inf

# (case id, dotted key of config.yaml, new value, text the message must hold besides the file's path)
CONFIG_CASES: list[tuple[str, str, Any, str]] = [
    ("backbone-vit", "model.backbone", "vit_huge_patch14_224", "model.backbone must be a timm ResNet"),
    (
        "backbone-unknown-tag",
        "model.backbone",
        "resnet18.no_such_tag",
        "timm has no weights tagged no_such_tag",
    ),
    ("backbone-list", "model.backbone", [1], "model.backbone"),
    ("kernel-negative", "model.cbam.kernel_size", -7, "model.cbam.kernel_size"),
    ("kernel-even", "model.cbam.kernel_size", 4, "model.cbam.kernel_size"),
    ("kernel-huge", "model.cbam.kernel_size", 100_001, "GiB of weights"),  # checked, never allocated
    ("reduction-zero", "model.cbam.reduction", 0, "model.cbam.reduction"),
    ("pool-order", "model.cbam.pool_order", "sideways", "model.cbam.pool_order"),
    ("gates", "model.cbam.gates", "none", "model.cbam.gates"),
    ("alpha-5", "model.alpha", 5.0, "model.alpha must lie in (0.0, 1.0], got 5.0"),
    ("alpha-nan", "model.alpha", NAN, "model.alpha must lie in (0.0, 1.0], got nan"),
    ("alpha-inf", "model.alpha", INF, "model.alpha must lie in (0.0, 1.0], got inf"),
    ("alpha-zero", "model.alpha", 0.0, "model.alpha must lie in (0.0, 1.0], got 0.0"),
    ("rho-negative", "model.rho", -3, "model.rho must lie in [0.0, 1.0], got -3.0"),
    ("rho-nan", "model.rho", NAN, "model.rho must lie in [0.0, 1.0], got nan"),
    ("variant", "model.variant", "nonsense", "model.variant"),
    ("attention", "model.attention", "transformer", "model.attention"),
    ("unknown-key", "model.colour", "red", "model.colour"),
    ("height-zero", "input.height", 0, "input.height must be"),
    ("height-15", "input.height", 15, "input.height must be"),
    ("width-negative", "input.width", -32, "input.width must be"),
    ("height-float", "input.height", 32.5, "input.height must be of type int"),
    ("height-huge", "input.height", 1_000_000, "GiB for one image's largest feature map"),
    ("width-huge", "input.width", 1_000_000, "GiB for one image's largest feature map"),
    ("classes-1e12", "num_classes", 10**12, "GiB of weights"),
    ("classes-1e8", "num_classes", 10**8, "GiB of weights"),
    ("classes-1e30", "num_classes", 10**30, "is too large to build"),
    ("classes-zero", "num_classes", 0, "num_classes must be"),
    ("classes-bool", "num_classes", True, "num_classes must be of type int"),
    ("embedding-zero", "embedding_dim", 0, "embedding_dim must be"),
    ("embedding-mismatch", "embedding_dim", 512, "embedding_dim is 512, but its network gives 1536"),
    ("mean-nan", "input.mean", [NAN, 0.5, 0.5], "input.mean must hold finite numbers"),
    ("mean-inf", "input.mean", [0.5, -INF, 0.5], "input.mean must hold finite numbers"),
    ("std-inf", "input.std", [INF, 0.2, 0.2], "input.std must hold finite numbers"),
    ("std-nan", "input.std", [0.2, 0.2, NAN], "input.std must hold finite numbers"),
    ("std-zero", "input.std", [0.0, 0.2, 0.2], "input.std must be positive"),
    ("std-negative", "input.std", [0.2, -0.2, 0.2], "input.std must be positive"),
    ("std-two-values", "input.std", [0.2, 0.2], "input.std must be a list of 3 numbers"),
    # No interpolation is ever resolved: oc.env would read the environment, oc.decode parse a value.
    (
        "env-backbone",
        "model.backbone",
        f"${{oc.env:{SECRET_VARIABLE}}}",
        "model.backbone holds the interpolation",
    ),
    (
        "env-pool-order",
        "model.cbam.pool_order",
        f"${{oc.env:{SECRET_VARIABLE}}}",
        "model.cbam.pool_order holds",
    ),
    ("env-classes", "num_classes", f"${{oc.env:{SECRET_VARIABLE},3}}", "num_classes holds the interpolation"),
    ("decode-height", "input.height", "${oc.decode:'1000000'}", "input.height holds the interpolation"),
    ("env-in-a-list", "input.mean", [f"${{oc.env:{SECRET_VARIABLE}}}", 0.5, 0.5], "input.mean.0 holds"),
    ("relative-rho", "model.rho", "${model.alpha}", "model.rho holds the interpolation"),
    (
        "escaped",
        "model.backbone",
        f"\\${{oc.env:{SECRET_VARIABLE}}}",
        "model.backbone holds the interpolation",
    ),
    ("provenance-list", "provenance", [1, 2], "provenance must be a mapping"),
]


def _set(tensors: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**tensors, name: value}


def _poisoned(tensors: dict[str, torch.Tensor], name: str, value: float) -> dict[str, torch.Tensor]:
    tensor = tensors[name].clone()
    tensor.view(-1)[0] = value
    return _set(tensors, name, tensor)


CONV, COUNTER = "backbone.conv1.weight", "backbone.bn1.num_batches_tracked"
# (case id, edit of the tensors, text the message must hold besides the file's path)
WEIGHT_CASES: list[tuple[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], str]] = [
    ("int64", lambda t: _set(t, CONV, (t[CONV] * 100).to(torch.int64)), f"'{CONV}' has dtype torch.int64"),
    ("bool", lambda t: _set(t, CONV, t[CONV] > 0), f"'{CONV}' has dtype torch.bool"),
    ("uint8", lambda t: _set(t, CONV, t[CONV].to(torch.uint8)), f"'{CONV}' has dtype torch.uint8"),
    ("complex", lambda t: _set(t, CONV, t[CONV].to(torch.complex64)), f"'{CONV}' has dtype torch.complex64"),
    ("float-counter", lambda t: _set(t, COUNTER, t[COUNTER].float()), f"'{COUNTER}' has dtype torch.float32"),
    ("nan", lambda t: _poisoned(t, CONV, NAN), f"tensor '{CONV}' holds NaN or infinite values"),
    (
        "inf",
        lambda t: _poisoned(t, "global_head.classifier.weight", INF),
        "'global_head.classifier.weight' holds",
    ),
    (
        "minus-inf-statistics",
        lambda t: _poisoned(t, "backbone.bn1.running_var", -INF),
        "'backbone.bn1.running_var'",
    ),
]

# Every case goes through the API and one command; every other surface takes one case of each kind
# (they share load_model_folder, so a case of each kind shows they reach it and report it alike).
SURFACES = ("from_pretrained", "extract")
OTHER_SURFACES = ("extractor", "index", "search")
SAMPLED = {
    "alpha-nan",
    "classes-1e12",
    "kernel-huge",
    "height-huge",
    "env-backbone",
    "std-inf",
    "nan",
    "int64",
}


def surface_cases(cases: list[Any]) -> list[Any]:
    """``pytest.param(surface, *case)`` for every case through :data:`SURFACES`, samples through the rest."""
    return [
        pytest.param(surface, *case[1:], id=f"{case[0]}-{surface}")
        for case in cases
        for surface in (*SURFACES, *(OTHER_SURFACES if case[0] in SAMPLED else ()))
    ]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny model folder, a gallery of two images and the index of it built with that model."""
    root = tmp_path_factory.mktemp("hostile-folder")
    config = tiny_config(root)
    folder = write_folder(root / "model", tiny_network(config), config)
    gallery = root / "gallery"
    write_people(gallery, [(0, 0), (1, 1)])
    index_gallery(folder, gallery, root / "gallery.index", progress=False)
    return folder, gallery, root / "gallery.index"


def snapshot(*roots: Path) -> dict[str, str]:
    """Every entry under ``roots``: a file's content hash, ``"dir"``, or a link's target (not followed)."""
    tree = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    tree[path] = f"link to {os.readlink(path)}"
                elif os.path.isdir(path):
                    tree[path] = "dir"
                else:
                    tree[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return tree


def edited_config(folder: Path, key: str, value: Any) -> None:
    path = folder / CONFIG_NAME
    data = yaml.safe_load(path.read_text())
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(data))


def assert_refused(
    surface: str, hostile: Path, sources, tmp_path: Path, monkeypatch, capsys, message: str
) -> None:
    """``surface`` refuses the folder ``hostile`` in one line naming its file and ``message``."""
    _, gallery, index = sources
    if surface in ("from_pretrained", "extractor"):
        with pytest.raises(ModelFolderError) as caught:
            STADBNet.from_pretrained(hostile) if surface == "from_pretrained" else ReIDExtractor(hostile)
        text, code = str(caught.value), 2
        out, err = "", f"error: {text}\n"
    else:
        work = tmp_path / "work"
        arguments = {
            "extract": [
                "extract",
                "--images",
                str(gallery),
                "--out",
                str(work / "feats.npy"),
                "--no-progress",
            ],
            "index": ["index", "--images", str(gallery), "--out", str(work / "new.index"), "--no-progress"],
            "search": [
                *("search", "--index", str(index), "--query", str(gallery)),
                *("--out-json", str(work / "r.json"), "--out-html", str(work / "r.html")),
            ],
        }[surface]
        code, out, err = run_cli([*arguments, "--model", str(hostile)], monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0] and str(hostile) in lines[0], lines[0]
    assert "Traceback" not in err and SECRET not in out + err


@pytest.mark.parametrize(("surface", "key", "value", "message"), surface_cases(CONFIG_CASES))
def test_a_hostile_config_is_one_line_and_changes_nothing(
    surface: str, key: str, value: Any, message: str, sources, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    hostile = Path(shutil.copytree(sources[0], tmp_path / "hostile"))
    edited_config(hostile, key, value)
    before = snapshot(tmp_path, sources[0].parent)
    assert_refused(surface, hostile, sources, tmp_path, monkeypatch, capsys, message)
    assert snapshot(tmp_path, sources[0].parent) == before


@pytest.mark.parametrize(("surface", "edit", "message"), surface_cases(WEIGHT_CASES))
def test_hostile_weights_are_one_line_and_change_nothing(
    surface: str, edit, message: str, sources, tmp_path: Path, monkeypatch, capsys
) -> None:
    hostile = Path(shutil.copytree(sources[0], tmp_path / "hostile"))
    weights = hostile / WEIGHTS_NAME
    save_file(edit(load_file(str(weights))), str(weights))
    before = snapshot(tmp_path, sources[0].parent)
    assert_refused(surface, hostile, sources, tmp_path, monkeypatch, capsys, message)
    assert snapshot(tmp_path, sources[0].parent) == before


# ----------------------------------------------------------------------- neighbours that must still load
def test_the_size_bounds_are_far_above_a_real_model() -> None:
    """The paper's ResNet-50 at 384 x 128 with 100,000 identities sits well inside both bounds."""
    from stadb_reid.model.folder.footprint import measure_footprint

    footprint = measure_footprint(lambda: STADBNet(100_000, backbone="resnet50"), 384, 128)
    assert footprint.weight_bytes < MAX_WEIGHT_BYTES / 10
    assert footprint.feature_map_bytes < MAX_FEATURE_MAP_BYTES / 50


def test_an_interpolation_in_the_provenance_is_kept_literally(sources, tmp_path: Path, monkeypatch) -> None:
    """The provenance only feeds the card: it is read as written, never resolved."""
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    folder = Path(shutil.copytree(sources[0], tmp_path / "model"))
    literal = f"stadb-reid train --set output_dir=${{oc.env:{SECRET_VARIABLE}}}"
    edited_config(folder, "provenance.command", literal)
    assert read_model_config(folder).provenance["command"] == literal
    STADBNet.from_pretrained(folder)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model.alpha", 1.0),
        ("model.rho", 0.0),
        ("model.rho", 1),
        ("input.height", 16),
        ("input.mean", [0, -1, 2]),
    ],
)
def test_values_on_the_edge_of_their_domain_load(sources, tmp_path: Path, key: str, value: Any) -> None:
    folder = Path(shutil.copytree(sources[0], tmp_path / "model"))
    edited_config(folder, key, value)
    assert torch.isfinite(STADBNet.from_pretrained(folder)(random_images(2, 0, HEIGHT, WIDTH))).all()


def test_float64_weights_load_to_the_same_embeddings(sources, tmp_path: Path) -> None:
    """Another floating dtype loses nothing the network's float32 keeps, so it is accepted."""
    folder = Path(shutil.copytree(sources[0], tmp_path / "model"))
    weights = folder / WEIGHTS_NAME
    tensors = load_file(str(weights))
    save_file({k: v.double() if v.is_floating_point() else v for k, v in tensors.items()}, str(weights))
    images = random_images(2, 0, HEIGHT, WIDTH)
    with torch.no_grad():
        assert torch.equal(
            STADBNet.from_pretrained(folder)(images), STADBNet.from_pretrained(sources[0])(images)
        )
