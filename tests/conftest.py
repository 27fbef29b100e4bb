"""Test isolation shared by the whole suite."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_torch_compile_state() -> Iterator[None]:
    """Forget code compiled by a test, and the shapes Dynamo learnt to treat as dynamic there.

    Without it, a layer test compiling ``CBAM.forward`` at several sizes leaves that code marked
    dynamic, and a later test compiling a whole network then traces it with symbolic sizes.
    """
    yield
    torch._dynamo.reset()
