"""Figures of stadb_reid.visualization: files, frame colours, keep mask, CMC, curves and the CLI."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

from stadb_layers import CBAM
from stadb_reid.cli import app
from stadb_reid.commands import visualize_checkpoint
from stadb_reid.config import Overrides, load_config
from stadb_reid.config.files import flatten_config
from stadb_reid.engine import build_model, load_checkpoint, train
from stadb_reid.errors import DatasetNotFoundError
from stadb_reid.evaluation import rank_metrics
from stadb_reid.model import STADBNet
from stadb_reid.visualization import compute_attention_maps, plot_training_curves, top_matches
from stadb_reid.visualization.attention import attention_figure
from stadb_reid.visualization.cmc import cmc_figure
from stadb_reid.visualization.curves import training_curves_figure
from stadb_reid.visualization.retrieval import (
    CORRECT_COLOR,
    QUERY_COLOR,
    WRONG_COLOR,
    RankedMatch,
    retrieval_figure,
    select_queries,
)
from tests.reid.test_evaluation import make_problem, problems

HEIGHT, WIDTH = 64, 32
FIGURES = ("curves.png", "cmc.png", "attention.png", "retrieval.png")


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of a ResNet-18 STADB on a tiny synthetic dataset."""
    root = tmp_path_factory.mktemp("visualization")
    config = load_config(
        [],
        {
            "data.dataset": "synthetic",
            "data.root": str(root / "synthetic"),
            "data.height": HEIGHT,
            "data.width": WIDTH,
            "data.num_identities": 4,
            "data.num_instances": 2,
            "data.num_workers": 0,
            "model.backbone": "resnet18",
            "model.pretrained": False,
            "optim.epochs": 1,
            "optim.warmup_epochs": 1,
            "output_dir": str(root / "run"),
            "device": "cpu",
        },
        ["data.options={num_train_identities: 8, num_test_identities: 6, images_per_identity_per_camera: 2}"],
    )
    train(config, progress=False, log=lambda _: None)
    return root / "run" / "checkpoint.pt"


def restore(checkpoint: Path) -> tuple[STADBNet, float]:
    state = load_checkpoint(checkpoint)
    config = load_config([], flatten_config(state["config"]))
    model = build_model(config, state["num_classes"], pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), config.model.alpha


def assert_png(path: Path, min_width: int, min_height: int) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width >= min_width and image.height >= min_height, (path, image.size)
        assert image.width <= 4000 and image.height <= 4000, (path, image.size)


def test_visualize_checkpoint_writes_the_four_figures(trained_checkpoint: Path, tmp_path: Path) -> None:
    cpu = Overrides.from_flags(device="cpu")
    paths = visualize_checkpoint(trained_checkpoint, tmp_path / "figures", overrides=cpu, num_queries=3)
    assert [path.name for path in paths] == list(FIGURES)
    assert paths.attention.parent == tmp_path / "figures"
    for path in paths:
        assert_png(path, 400, 300)
    # Three queries: one column each in the attention figure, one row each in the retrieval figure.
    with Image.open(paths.attention) as attention, Image.open(paths.retrieval) as retrieval:
        assert attention.height > attention.width
        assert retrieval.width > retrieval.height


def test_retrieval_frames_are_green_for_correct_and_red_for_wrong() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # grey noise, no saturated colour
    pattern = [[True, False, True], [False, False, True]]
    matches = [
        [RankedMatch(gallery_index=i, rank=i + 1, distance=0.1 * i, correct=c) for i, c in enumerate(row)]
        for row in pattern
    ]
    figure = retrieval_figure([image, image], matches, [[image] * 3, [image] * 3])
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(float) / 255
    height = pixels.shape[0]

    def left_frame_colour(axes_index: int) -> np.ndarray:
        box = figure.axes[axes_index].get_window_extent()
        return pixels[height - round((box.y0 + box.y1) / 2), round(box.x0)]

    expected = []
    for row in pattern:
        expected.append(QUERY_COLOR)
        expected += [CORRECT_COLOR if correct else WRONG_COLOR for correct in row]
    assert len(figure.axes) == len(expected)
    for index, colour in enumerate(expected):
        np.testing.assert_allclose(left_frame_colour(index), to_rgb(colour), atol=2 / 255, err_msg=str(index))


@settings(max_examples=60, deadline=None)
@given(problem=problems)
def test_top_matches_follow_the_evaluation_ranking(problem: tuple) -> None:
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(*problem)
    num_gallery = distmat.shape[1]
    rankings = top_matches(distmat, q_pids, g_pids, q_camids, g_camids, top_k=num_gallery)
    for q, ranked in enumerate(rankings):
        not_junk = [
            g for g in range(num_gallery) if not (g_pids[g] == q_pids[q] and g_camids[g] == q_camids[q])
        ]
        reference = sorted(not_junk, key=lambda g: (distmat[q, g], g))
        assert [m.gallery_index for m in ranked] == reference
        assert [m.rank for m in ranked] == list(range(1, len(reference) + 1))
        assert [m.correct for m in ranked] == [bool(g_pids[g] == q_pids[q]) for g in reference]
        assert [m.distance for m in ranked] == [float(distmat[q, g]) for g in reference]
    # The CMC is the share of valid queries with a correct match in the top n of these rankings.
    valid = [any(m.correct for m in ranked) for ranked in rankings]
    if not any(valid):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metrics = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=num_gallery)
    for n in range(1, len(metrics.cmc) + 1):
        found = sum(any(m.correct for m in ranked[:n]) for ranked in rankings)
        assert metrics.cmc[n - 1] == pytest.approx(found / sum(valid), abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(problem=problems)
def test_select_queries_is_seeded_eligible_and_spreads_identities(problem: tuple) -> None:
    _, q_pids, _, q_camids, _ = make_problem(*problem)
    eligible = q_camids != 0
    for num_queries in (1, 3, len(q_pids) + 1):
        chosen = select_queries(q_pids, num_queries, seed=problem[0] % 100, eligible=eligible)
        again = select_queries(q_pids, num_queries, seed=problem[0] % 100, eligible=eligible)
        assert np.array_equal(chosen, again)
        assert len(chosen) == min(num_queries, int(eligible.sum())) == len(set(chosen.tolist()))
        assert all(eligible[chosen])
        distinct = len(set(q_pids[eligible].tolist()))
        assert len(set(q_pids[chosen].tolist())) == min(len(chosen), distinct)


def test_keep_mask_drawn_equals_the_threshold_rule(trained_checkpoint: Path) -> None:
    model, alpha = restore(trained_checkpoint)
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    maps = compute_attention_maps(model, images)
    assert model.branch is not None
    with torch.no_grad():
        feature_map = model.branch.extra_bottleneck(model.backbone(images))
        attention = feature_map.mean(dim=1, keepdim=True)
        expected_keep = attention < alpha * attention.amax(dim=(2, 3), keepdim=True)
        cbam = model.branch.attention
        assert isinstance(cbam, CBAM) and cbam.channel_gate is not None
        cbam_output = cbam(feature_map)
        channel_gated = cbam.channel_gate(feature_map)
    assert not expected_keep.all(), "the peak is always dropped"
    assert maps.keep_mask is not None and maps.spatial_attention is not None
    assert torch.equal(maps.keep_mask, expected_keep)
    torch.testing.assert_close(maps.attention, attention)
    # CBAM's output is its channel-gated input scaled by the spatial map we captured.
    torch.testing.assert_close(cbam_output, channel_gated * maps.spatial_attention)

    figure = attention_figure(images, maps)
    labels = [figure.axes[row * 3].get_ylabel() for row in range(4)]
    assert labels[2].startswith("keep mask")
    stride = HEIGHT // attention.shape[2], WIDTH // attention.shape[3]
    for column in range(3):
        drawn = figure.axes[2 * 3 + column].images[1].get_array()
        assert drawn is not None
        cells = expected_keep[column, 0].numpy()
        assert np.array_equal(np.ma.getmaskarray(drawn), np.kron(cells, np.ones(stride, dtype=bool)))


@pytest.mark.parametrize(
    ("variant", "attention", "rows", "absent"),
    [
        ("global", "cbam", 2, ["keep mask", "CBAM"]),
        ("global_drop", "cbam", 3, ["CBAM"]),
        ("global_attention", "se", 2, ["keep mask", "CBAM"]),
        ("bdb", "cbam", 2, ["keep mask", "CBAM"]),
    ],
)
def test_attention_figure_leaves_out_what_a_variant_lacks(
    variant: str, attention: str, rows: int, absent: list[str]
) -> None:
    torch.manual_seed(0)
    model = STADBNet(4, variant=variant, attention=attention, backbone="resnet18")
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    maps = compute_attention_maps(model, images)
    assert maps.source == ("backbone" if variant == "global" else "branch")
    figure = attention_figure(images, maps, captions=["a", "b"])
    assert len([axes for axes in figure.axes if axes.images]) == rows * 2
    absent_lines = " ".join(figure.get_suptitle().split()).split("absent: ")[1:]
    assert len(absent_lines) == len(absent)
    assert all(line.startswith(name) for line, name in zip(absent_lines, absent, strict=True)), absent_lines
    assert model.training, "the model's mode is restored"


@settings(max_examples=30, deadline=None)
@given(problem=problems)
def test_cmc_plotted_is_the_evaluation_cmc(problem: tuple) -> None:
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(*problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            metrics = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)
        except ValueError:
            return  # no valid query
    curve = cmc_figure(metrics).axes[0].lines[0]
    plotted = np.asarray(curve.get_ydata(), dtype=float)
    np.testing.assert_array_equal(np.asarray(curve.get_xdata()), np.arange(1, len(metrics.cmc) + 1))
    np.testing.assert_allclose(plotted, 100 * metrics.cmc.astype(float))
    assert np.all(np.diff(plotted) >= 0)


def test_curves_with_and_without_evaluations(tmp_path: Path) -> None:
    history = [{"epoch": e, "loss": 10.0 / e, "lr": 1e-3 * min(1, e / 2)} for e in range(1, 5)]
    figure = training_curves_figure(history)
    accuracy = figure.axes[2]
    assert not accuracy.lines and "no evaluation" in accuracy.texts[0].get_text()
    assert_png(plot_training_curves(history, tmp_path / "curves.png"), 400, 200)

    history[1].update(rank1=40.0, mAP=30.0)
    history[3].update(rank1=60.0, mAP=45.0)
    accuracy = training_curves_figure(history).axes[2]
    assert [np.asarray(line.get_xdata()).tolist() for line in accuracy.lines] == [[2.0, 4.0], [2.0, 4.0]]
    assert [np.asarray(line.get_ydata()).tolist() for line in accuracy.lines] == [[40.0, 60.0], [30.0, 45.0]]


@pytest.mark.parametrize(
    ("history", "message"),
    [([], "at least one epoch"), ([{"epoch": 1, "loss": 1.0}], r"history\[0\] lacks lr")],
)
def test_curves_reject_a_malformed_history(history: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        training_curves_figure(history)


def test_retrieval_figure_rejects_mismatched_inputs() -> None:
    image = np.zeros((HEIGHT, WIDTH, 3))
    with pytest.raises(ValueError, match="one entry per query"):
        retrieval_figure([image], [], [])
    with pytest.raises(ValueError, match="query 0: 1 matches but 0 gallery images"):
        retrieval_figure([image], [[RankedMatch(0, 1, 0.0, True)]], [[]])


def test_cli_visualize_end_to_end(trained_checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "visualize",
            "--checkpoint",
            str(trained_checkpoint),
            "--output-dir",
            str(tmp_path / "figs"),
            "--num-queries",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in FIGURES:
        assert f"wrote {tmp_path / 'figs' / name}" in result.output
        assert_png(tmp_path / "figs" / name, 300, 200)


def test_another_dataset_does_not_inherit_the_checkpoints_loader_options(
    trained_checkpoint: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "Market-1501"
    arguments = ["visualize", "--checkpoint", str(trained_checkpoint), "--dataset", "market1501"]
    result = CliRunner().invoke(app, [*arguments, "--data-root", str(missing), "--no-progress"])
    assert isinstance(result.exception, DatasetNotFoundError), result.exception
    assert str(missing) in str(result.exception)


def test_cli_visualize_reports_a_missing_checkpoint_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    command = [sys.executable, "-m", "stadb_reid", "visualize", "--checkpoint", str(missing)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"checkpoint not found: {missing}" in result.stderr
    assert "Traceback" not in result.stderr


def test_figures_are_agg_figures_without_pyplot() -> None:
    figure = training_curves_figure([{"epoch": 1, "loss": 1.0, "lr": 1e-3}])
    assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
