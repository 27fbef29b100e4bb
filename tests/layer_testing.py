"""The generic tests every layer passes, in the manner of kornia's ``BaseTester``.

A layer's test class inherits :class:`BaseLayerTests` and describes the layer with a few class attributes
and factory methods; the base class then runs

* ``test_smoke``: a forward in each training mode gives a finite tensor, and ``repr`` works;
* ``test_shape_and_dtype``: float32 and float64 in, the expected shape and the same dtype out;
* ``test_empty_batch``: a batch of zero samples is accepted;
* ``test_bad_input`` and ``test_bad_arguments``: a one-line ``ValueError`` from the module and, where
  there is one, from the functional form;
* ``test_gradcheck``: :func:`torch.autograd.gradcheck` in float64 on small inputs, with respect to the
  floating inputs and every parameter;
* ``test_module_matches_functional``: the module and its functional form agree bit for bit (only
  where ``has_functional``);
* ``test_channels_last``: channels-last feature maps give the output of contiguous ones (4-D inputs);
* ``test_compile``: one ``torch.compile(fullgraph=True)`` per layer, forward and input gradients
  against eager;
* ``test_compile_dynamic``: ``torch.compile(dynamic=True, fullgraph=True)`` over three input shapes
  (:meth:`~BaseLayerTests.dynamic_inputs`), forward and input gradients against eager.

Layer-specific tests (reference formulas, peer libraries, edge semantics) stay next to the class. A new
layer needs little more than this::

    class TestSE(BaseLayerTests):
        layer_class = SE
        config = {"channels": 4, "reduction": 2}
        bad_arguments = [({"channels": 0}, "channels must be a positive integer")]

        def inputs(self, dtype=torch.float32):
            return (torch.randn(2, 4, 3, 3, dtype=dtype),)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

#: A bad input and the message (regex) of the ``ValueError`` it must raise.
BadInput = tuple[tuple[Tensor, ...], str]


def feature_map_bad_inputs(channels: int | None = None, owner: str = "") -> list[BadInput]:
    """The malformed (N, C, H, W) inputs every feature-map layer rejects (``check_feature_map``).

    With ``channels``, also maps with the wrong channel count, whose message names ``owner``.
    """
    c = 4 if channels is None else channels
    cases: list[BadInput] = [
        ((torch.randn(c, 5, 6),), r"x must be a 4-D \(N, C, H, W\) tensor, got 3 dimensions"),
        ((torch.randn(1, c, 5, 6, 2),), r"x must be a 4-D \(N, C, H, W\) tensor, got 5 dimensions"),
        ((torch.ones(2, c, 5, 6, dtype=torch.int64),), "x must be a floating tensor, got dtype torch.int64"),
        ((torch.randn(2, c, 0, 6),), "x must have a non-empty spatial size, got H=0 and W=6"),
        ((torch.randn(2, c, 5, 0),), "x must have a non-empty spatial size, got H=5 and W=0"),
        ((torch.randn(0, c, 0, 0),), "x must have a non-empty spatial size, got H=0 and W=0"),
    ]
    if channels is not None:
        for wrong in (channels - 1, channels + 2):
            message = f"{owner} was built for channels={channels}, got x with {wrong} channels"
            cases.append(((torch.randn(2, wrong, 5, 6),), message))
    return cases


def _mode_ids(modes: Sequence[bool]) -> list[str]:
    return ["train" if training else "eval" for training in modes]


class BaseLayerTests:
    """Generic layer tests; a subclass sets the attributes and overrides the factories below."""

    #: The layer class; :meth:`build` calls it with :attr:`config`.
    layer_class: ClassVar[type[nn.Module]]
    #: Constructor keyword arguments of the layer under test (small sizes keep gradcheck fast).
    config: ClassVar[dict[str, Any]] = {}
    #: Training modes that the smoke, shape, bad-input and channels-last tests run in.
    training_modes: ClassVar[tuple[bool, ...]] = (True, False)
    #: Training modes of ``test_gradcheck``; ``None`` means :attr:`training_modes`.
    gradcheck_training_modes: ClassVar[tuple[bool, ...] | None] = None
    #: Constructor overrides that ``test_gradcheck`` runs with, one gradcheck each.
    gradcheck_configs: ClassVar[Sequence[dict[str, Any]]] = ({},)
    #: Keyword arguments of :func:`torch.autograd.gradcheck`.
    gradcheck_kwargs: ClassVar[dict[str, Any]] = {}
    #: ``(constructor overrides, message regex)``: arguments the constructor (and the functional form)
    #: must reject with a ``ValueError``.
    bad_arguments: ClassVar[Sequence[tuple[dict[str, Any], str]]] = ()
    #: Whether :meth:`functional` is the layer's functional form.
    has_functional: ClassVar[bool] = False
    #: Training mode of ``test_compile`` (one compile per layer).
    compile_training: ClassVar[bool] = True
    #: ``torch.testing.assert_close`` keyword arguments of ``test_channels_last`` (float64).
    tolerance: ClassVar[dict[str, Any]] = {}
    #: ``torch.testing.assert_close`` keyword arguments of ``test_compile`` (float32); {} for the defaults.
    compile_tolerance: ClassVar[dict[str, Any]] = {}

    # ----------------------------------------------------------------------------------- factories
    def build(self, **overrides: Any) -> nn.Module:
        """A fresh layer built from :attr:`config` with ``overrides`` applied."""
        return self.layer_class(**{**self.config, **overrides})

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
        """Small, seeded positional inputs of the layer's ``forward``."""
        raise NotImplementedError

    def empty_inputs(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
        """:meth:`inputs` with a batch of zero samples."""
        return tuple(t[:0] for t in self.inputs(dtype))

    def bad_inputs(self) -> Sequence[BadInput]:
        """Inputs that ``forward`` (and the functional form) must reject with a ``ValueError``."""
        return ()

    def functional(self, *inputs: Tensor, **config: Any) -> Any:
        """The functional form, called with the layer's constructor arguments (see :attr:`has_functional`)."""
        raise NotImplementedError

    def output(self, result: Any) -> Tensor:
        """The tensor to compare from what ``forward`` or the functional form returned."""
        assert isinstance(result, Tensor)
        return result

    def expected_shape(self, *inputs: Tensor) -> tuple[int, ...]:
        """Shape of the output for ``inputs``; by default that of the first input."""
        return tuple(inputs[0].shape)

    def compile_inputs(self) -> Sequence[tuple[Tensor, ...]]:
        """Input sets the compiled layer runs on (same shapes, so one compile serves them all)."""
        return (self.inputs(),)

    def dynamic_inputs(self) -> Sequence[tuple[Tensor, ...]]:
        """Three input sets of different shapes for ``test_compile_dynamic``.

        By default :meth:`inputs` with another batch size and, for a feature map, another height and
        width each time (sizes of at least 2, which Dynamo does not specialise); a layer of several
        inputs overrides it.
        """
        inputs = self.inputs()
        if len(inputs) != 1:
            raise NotImplementedError(f"{type(self).__name__} must override dynamic_inputs")
        (x,) = inputs
        generator = torch.Generator().manual_seed(3)
        sizes = ((2, 5, 6), (3, 7, 5), (4, 6, 9)) if x.dim() == 4 else ((2,), (3,), (5,))
        input_sets = []
        for batch, *spatial in sizes:
            shape = (batch, *x.shape[1 : x.dim() - len(spatial)], *spatial)
            input_sets.append((torch.randn(shape, generator=generator, dtype=x.dtype),))
        return input_sets

    # ------------------------------------------------------------------------------------- helpers
    def twins(self, training: bool) -> tuple[nn.Module, nn.Module]:
        """Two identical layers (same state, RNG state included) in the given mode."""
        reference, twin = self.build(), self.build()
        twin.load_state_dict(reference.state_dict())
        return reference.train(training), twin.train(training)

    def assert_gradcheck(self, layer: nn.Module, inputs: Sequence[Tensor]) -> None:
        """Gradcheck ``layer`` in float64 with respect to its floating inputs and all its parameters."""
        layer = layer.to(torch.float64)
        names = [name for name, _ in layer.named_parameters()]
        params = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
        args = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]

        def function(*tensors: Tensor) -> Tensor:
            state = dict(zip(names, tensors[len(args) :], strict=True))
            return self.output(torch.func.functional_call(layer, state, tensors[: len(args)]))

        assert torch.autograd.gradcheck(function, (*args, *params), **self.gradcheck_kwargs)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``training`` and ``gradcheck_config`` from the class attributes."""
        if "training" in metafunc.fixturenames:
            modes = self.training_modes
            if metafunc.function.__name__ == "test_gradcheck" and self.gradcheck_training_modes is not None:
                modes = self.gradcheck_training_modes
            metafunc.parametrize("training", modes, ids=_mode_ids(modes))
        if "gradcheck_config" in metafunc.fixturenames:
            configs = list(self.gradcheck_configs)
            ids = [",".join(f"{k}={v}" for k, v in c.items()) or "default" for c in configs]
            metafunc.parametrize("gradcheck_config", configs, ids=ids)

    # --------------------------------------------------------------------------------------- tests
    def test_smoke(self, training: bool) -> None:
        layer = self.build().train(training)
        out = self.output(layer(*self.inputs()))
        assert torch.isfinite(out).all()
        assert repr(layer).startswith(type(layer).__name__)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_shape_and_dtype(self, training: bool, dtype: torch.dtype) -> None:
        layer = self.build().to(dtype).train(training)
        inputs = self.inputs(dtype)
        out = self.output(layer(*inputs))
        assert out.shape == self.expected_shape(*inputs)
        assert out.dtype == dtype

    @pytest.mark.filterwarnings(r"ignore:var_mean\(\). degrees of freedom:UserWarning")  # SRM, N = 0
    def test_empty_batch(self, training: bool) -> None:
        inputs = self.empty_inputs()
        out = self.output(self.build().train(training)(*inputs))
        assert out.shape == self.expected_shape(*inputs)

    def test_bad_input(self, training: bool) -> None:
        cases = self.bad_inputs()
        if not cases:
            pytest.skip("the layer does not check its input")
        layer = self.build().train(training)
        for inputs, match in cases:
            with pytest.raises(ValueError, match=match) as raised:
                layer(*inputs)
            assert "\n" not in str(raised.value)
            if self.has_functional:
                with pytest.raises(ValueError, match=match):
                    self.functional(*inputs, **self.config)

    def test_bad_arguments(self) -> None:
        if not self.bad_arguments:
            pytest.skip("no bad constructor arguments listed")
        inputs = self.inputs()
        for overrides, match in self.bad_arguments:
            with pytest.raises(ValueError, match=match) as raised:
                self.build(**overrides)
            assert "\n" not in str(raised.value)
            if self.has_functional:
                with pytest.raises(ValueError, match=match):
                    self.functional(*inputs, **{**self.config, **overrides})

    def test_gradcheck(self, training: bool, gradcheck_config: dict[str, Any]) -> None:
        self.assert_gradcheck(self.build(**gradcheck_config).train(training), self.inputs(torch.float64))

    def test_module_matches_functional(self) -> None:
        if not self.has_functional:
            pytest.skip("the layer has no functional form")
        inputs = self.inputs()
        expected = self.output(self.functional(*inputs, **self.config))
        torch.testing.assert_close(self.output(self.build().train()(*inputs)), expected, rtol=0, atol=0)

    def test_channels_last(self, training: bool) -> None:
        inputs = self.inputs(torch.float64)
        if inputs[0].dim() != 4:
            pytest.skip("not a feature-map layer")
        reference, twin = self.twins(training)
        reference, twin = reference.to(torch.float64), twin.to(torch.float64)
        channels_last = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
        assert not channels_last[0].is_contiguous()
        expected = self.output(reference(*inputs))
        torch.testing.assert_close(self.output(twin(*channels_last)), expected, **self.tolerance)

    def test_compile(self) -> None:
        torch._dynamo.reset()  # compiled code of other instances of the class must not count here
        reference, twin = self.twins(self.compile_training)
        self.assert_compiled_matches(reference, torch.compile(twin, fullgraph=True), self.compile_inputs())

    def test_compile_dynamic(self) -> None:
        torch._dynamo.reset()
        reference, twin = self.twins(self.compile_training)
        compiled = torch.compile(twin, dynamic=True, fullgraph=True)
        input_sets = self.dynamic_inputs()
        assert len({tuple(t.shape for t in inputs) for inputs in input_sets}) == 3, "three shapes"
        self.assert_compiled_matches(reference, compiled, input_sets)

    def assert_compiled_matches(
        self, reference: nn.Module, compiled: Callable[..., Any], input_sets: Sequence[tuple[Tensor, ...]]
    ) -> None:
        """The compiled twin's outputs and input gradients equal eager ones on every input set."""
        for inputs in input_sets:
            results = []
            for layer in (reference, compiled):
                args = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
                out = self.output(layer(*args))
                out.sum().backward()
                results.append((out.detach(), [t.grad for t in args if t.is_floating_point()]))
            (expected, expected_grads), (actual, grads) = results
            torch.testing.assert_close(actual, expected, equal_nan=True, **self.compile_tolerance)
            for grad, expected_grad in zip(grads, expected_grads, strict=True):
                torch.testing.assert_close(grad, expected_grad, equal_nan=True, **self.compile_tolerance)
