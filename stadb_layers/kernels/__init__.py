"""Private compute kernels behind the public layers (not part of the public API).

For :class:`~stadb_layers.SelfThresholdDrop`: :mod:`.threshold_mask` holds the mask rule with the
reference operators, :mod:`.cpu_threshold_drop` and :mod:`.triton_threshold_drop` the fused passes that
reproduce it; :mod:`stadb_layers._threshold_drop_autograd` chooses between them. Triton is imported
lazily, so this package imports without it.
"""
