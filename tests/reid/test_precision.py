"""Extractor precision paths against fp32: cosines and rank metrics on a labelled set; auto's choice.

The labelled set is synthetic people (8 identities, 2 cameras, 2 images each) through the tiny
ResNet-18 STADB network of the extractor tests; parity is checked as the issue states it on real data:
every cosine >= 0.999, rank-1 and mAP within 0.3 points of fp32.
"""

import copy
import importlib.util
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from stadb_reid.commands import extract as extract_module
from stadb_reid.commands import extract_folder, index_gallery
from stadb_reid.commands import index as index_module
from stadb_reid.commands.streaming import StreamingEmbedder
from stadb_reid.data.synthetic import render_person
from stadb_reid.errors import ConfigError
from stadb_reid.evaluation import evaluate_from_features
from stadb_reid.inference import ReIDExtractor
from stadb_reid.inference import precision as precision_module

from .test_export import HEIGHT, WIDTH, tiny_config
from .test_model_folder import tiny_network, write_folder

needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed"
)
PATHS = ["fp32", "bf16", pytest.param("onnx", marks=needs_onnxruntime)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("precision")
    config = tiny_config(root)
    network = tiny_network(config, seed=2)
    return network, config, write_folder(root / "model", network, config)


@pytest.fixture(scope="module")
def people() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    images, pids, cameras = [], [], []
    for pid in range(8):
        for camera in range(2):
            for shot in range(2):
                person = render_person(
                    pid, camera, image_seed=10 * pid + shot, height=HEIGHT * 2, width=WIDTH * 2
                )
                images.append(np.asarray(person))
                pids.append(pid)
                cameras.append(camera)
    return images, np.array(pids), np.array(cameras)


def rank(embeddings: np.ndarray, pids: np.ndarray, cameras: np.ndarray) -> tuple[float, float]:
    query = np.arange(len(pids)) % 4 == 0  # one image per identity and camera
    metrics = evaluate_from_features(
        embeddings[query],
        embeddings[~query],
        pids[query],
        pids[~query],
        cameras[query],
        cameras[~query],
        max_rank=1,
    )
    return 100 * float(metrics.cmc[0]), 100 * metrics.mean_ap  # points


@pytest.mark.parametrize("path", PATHS)
def test_every_path_keeps_parity_with_fp32(model, people, path: str) -> None:
    images, pids, cameras = people
    reference = ReIDExtractor(model[2], precision="fp32")(images)
    extractor = ReIDExtractor(model[2], precision=path, batch_size=5)
    assert extractor.precision == path and extractor.precision_description == f"precision {path}"
    found = extractor(images)
    assert found.dtype == np.float32 and found.shape == reference.shape
    cosine = (found * reference).sum(axis=1)  # both L2-normalised
    assert cosine.min() >= 0.999
    (rank1, ap), (rank1_ref, ap_ref) = rank(found, pids, cameras), rank(reference, pids, cameras)
    assert abs(rank1 - rank1_ref) <= 0.3 and abs(ap - ap_ref) <= 0.3


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_on_native_bf16_and_no_onnx_for_a_small_run(
    model, monkeypatch, native_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native_bf16)

    def no_export(*_: object) -> None:
        raise AssertionError("auto exported to ONNX")

    monkeypatch.setattr(precision_module, "_onnx", no_export)
    for expected_images in (None, 0, precision_module.AUTO_ONNX_MIN_IMAGES - 1):
        extractor = ReIDExtractor(model[2], expected_images=expected_images)
        assert extractor.precision == expected
        assert extractor.precision_description.startswith(f"precision {expected} (auto: ")


def test_autos_fp32_on_a_cpu_runs_a_channels_last_copy_and_fp32_the_network(model, monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    network = copy.deepcopy(model[0]).eval()
    layouts: list[bool] = []

    def record(_: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    network.register_forward_pre_hook(record)  # deep-copied with the network; the list is shared

    def no_probe() -> torch.Tensor:
        raise AssertionError("auto probed fp32")

    x = torch.rand(3, 3, HEIGHT, WIDTH)
    cpu = torch.device("cpu")
    auto = precision_module.build_runtime(network, "auto", cpu, HEIGHT, WIDTH, probe=no_probe)
    fp32 = precision_module.build_runtime(network, "fp32", cpu, HEIGHT, WIDTH, probe=no_probe)
    torch.testing.assert_close(auto.run(x), fp32.run(x), rtol=1e-5, atol=1e-6)
    assert (auto.name, fp32.name, layouts) == ("fp32", "fp32", [True, False])
    assert "fp32 channels-last" in auto.reason
    assert all(p.is_contiguous() for p in network.parameters())  # the network is left as it was


@pytest.fixture
def no_native_bf16(monkeypatch) -> list[int]:
    """A CPU without native bf16 where auto exports from 4 images; ``onnx`` is fp32 eager (exact), counted."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(precision_module, "AUTO_ONNX_MIN_IMAGES", 4)
    exports: list[int] = []

    def exact_onnx(network, height: int, width: int) -> precision_module.Runtime:
        exports.append(height * width)
        return precision_module.Runtime("onnx", precision_module._eager(network).run)

    monkeypatch.setattr(precision_module, "_onnx", exact_onnx)
    return exports


def test_auto_exports_to_onnx_for_a_large_run_without_native_bf16(model, monkeypatch, no_native_bf16) -> None:
    small, large = ReIDExtractor(model[2], expected_images=3), ReIDExtractor(model[2], expected_images=4)
    assert (small.precision, large.precision, len(no_native_bf16)) == ("fp32", "onnx", 1)
    assert "pays off from 4 images" in small.precision_description
    assert "4 images to embed earn back the ONNX export" in large.precision_description
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "onnxruntime" else find_spec(name, *rest),
    )
    without = ReIDExtractor(model[2], expected_images=4)
    assert without.precision == "fp32" and "no onnxruntime" in without.precision_description
    with pytest.raises(ValueError, match="expected_images"):
        ReIDExtractor(model[2], expected_images=-1)


def gallery_folder(root: Path, count: int) -> Path:
    """``root/gallery`` with ``count`` camera-sized JPEGs of synthetic people."""
    images = root / "gallery"
    images.mkdir()
    for pid in range(count):
        person = render_person(pid, 0, height=HEIGHT * 2, width=WIDTH * 2)
        person.save(images / f"{pid:04d}_c1s1_000001_01.jpg")
    return images


def test_index_and_extract_tell_auto_how_many_images_they_embed(model, tmp_path, no_native_bf16) -> None:
    images = gallery_folder(tmp_path, 5)
    built: list[ReIDExtractor] = []

    def run(command: Callable[..., object], *where: Path) -> None:
        command(model[2], images, *where, num_workers=0, progress=False, on_extractor=built.append)

    run(index_gallery, tmp_path / "index")  # five new images
    run(index_gallery, tmp_path / "index")  # none: nothing to earn the export back
    (images / "0005_c1s1_000001_01.jpg").write_bytes((images / "0000_c1s1_000001_01.jpg").read_bytes())
    run(index_gallery, tmp_path / "index")  # one new image
    run(extract_folder, tmp_path / "feats.npy")
    assert [extractor.precision for extractor in built] == ["onnx", "fp32", "fp32", "onnx"]


@pytest.mark.parametrize(
    ("cpus", "threads", "device", "expected"),
    [
        (2, 2, "cpu", 0),
        (1, 1, "cpu", 0),
        (4, 8, "cpu", 0),
        (12, 8, "cpu", 4),
        (64, 32, "cpu", 8),
        (2, 2, "cuda", 1),
    ],
)
def test_decoding_workers_are_the_cpus_the_network_leaves_free(
    monkeypatch, cpus: int, threads: int, device: str, expected: int
) -> None:
    monkeypatch.setattr(extract_module, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert extract_module.decoding_workers(torch.device(device)) == expected


def test_index_and_extract_decode_with_the_default_workers(model, tmp_path, monkeypatch) -> None:
    images = gallery_folder(tmp_path, 2)
    asked: list[str] = []

    def no_workers(device: torch.device) -> int:
        asked.append(device.type)
        return 0

    monkeypatch.setattr(index_module, "decoding_workers", no_workers)
    monkeypatch.setattr(extract_module, "decoding_workers", no_workers)
    index_gallery(model[2], images, tmp_path / "index", progress=False)
    extract_folder(model[2], images, tmp_path / "feats.npy", progress=False)
    assert asked == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="num_workers"):
        index_gallery(model[2], images, tmp_path / "other", num_workers=-1, progress=False)
    assert not (tmp_path / "other").exists()


def test_auto_falls_back_to_fp32_when_the_probe_misses_parity(model, monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(
        precision_module,
        "_bf16",
        lambda network, device: precision_module.Runtime("bf16", lambda x: torch.randn(x.shape[0], 1536)),
    )
    extractor = ReIDExtractor(model[2])
    assert extractor.precision == "fp32"
    assert "bf16 missed parity on the probe batch" in extractor.precision_description


def test_onnx_on_cuda_is_refused(model) -> None:
    with pytest.raises(ConfigError, match="precision onnx runs on the CPU"):
        precision_module.build_runtime(model[0], "onnx", torch.device("cuda"), 32, 16, probe=torch.zeros)


@pytest.mark.parametrize("workers", [0, 1])
def test_the_index_stream_gives_the_extractors_embeddings(model, tmp_path, workers: int) -> None:
    paths = []
    for pid in range(5):
        paths.append(tmp_path / f"{pid:04d}_c1s1_000001_01.jpg")
        render_person(pid, 0, height=HEIGHT * 2, width=WIDTH * 2).save(paths[-1])
    extractor = ReIDExtractor(model[2], batch_size=2, precision="fp32")
    expected = extractor(paths)
    stream = StreamingEmbedder(extractor, lambda: paths, workers)
    np.testing.assert_allclose(np.concatenate([stream(paths[:3]), stream(paths[3:])]), expected, atol=1e-6)
    np.testing.assert_allclose(stream(paths[1:2]), expected[1:2], atol=1e-6)  # out of order: in-process


def test_the_index_streams_workers_stop_with_its_last_image(model, tmp_path) -> None:
    paths = []
    for pid in range(5):
        paths.append(tmp_path / f"{pid:04d}_c1s1_000001_01.jpg")
        render_person(pid, 0, height=HEIGHT * 2, width=WIDTH * 2).save(paths[-1])
    before = set(multiprocessing.active_children())
    stream = StreamingEmbedder(ReIDExtractor(model[2], batch_size=2, precision="fp32"), lambda: paths, 2)
    stream(paths[:3])
    assert len(set(multiprocessing.active_children()) - before) == 2
    stream(paths[3:])  # the last images: the workers are stopped, not left to the garbage collector
    assert set(multiprocessing.active_children()) - before == set()


@pytest.mark.parametrize(
    ("variant", "attention"),
    [("stadb", "cbam"), ("stadb", "triplet"), ("bdb", "cbam")],  # fx cannot trace TripletAttention
)
def test_bf16_folds_batch_norms_exactly_and_leaves_the_network_alone(
    tmp_path, variant: str, attention: str
) -> None:
    network = tiny_network(tiny_config(tmp_path, **{"model.variant": variant, "model.attention": attention}))
    tensors = {name: t for name, t in network.state_dict().items() if isinstance(t, torch.Tensor)}
    before = {name: tensor.clone() for name, tensor in tensors.items()}
    x = torch.randn(3, 3, HEIGHT, WIDTH)
    folded = precision_module._fold_batch_norms(copy.deepcopy(network))
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), network(x), rtol=1e-5, atol=1e-5)

    def norms(module: torch.nn.Module) -> int:
        return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())

    assert (
        norms(folded.get_submodule("backbone")) == 0 < norms(network.backbone)
    )  # the backbone is nearly all the work
    state = network.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in before.items())
