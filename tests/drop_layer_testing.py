"""What every drop layer promises on top of :class:`~tests.layer_testing.BaseLayerTests`.

A drop layer (``SelfThresholdDrop``, ``BatchDrop``) regularises training only: in eval mode it returns
its input itself, and it exports to ONNX there (the deployed form).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .layer_testing import BaseLayerTests


class DropLayerTests(BaseLayerTests):
    """:class:`BaseLayerTests` plus identity and ONNX export in eval mode."""

    def test_identity_in_eval(self) -> None:
        (x,) = self.inputs()
        assert self.build().eval()(x) is x

    def test_onnx_in_eval(self, tmp_path: Path) -> None:
        onnxruntime = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
        layer = self.build().eval()
        (x,) = self.inputs()
        path = tmp_path / "layer.onnx"
        torch.onnx.export(layer, (x,), str(path), input_names=["x"], output_names=["y"])
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (output,) = session.run(None, {"x": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(output), x, rtol=0, atol=0)
