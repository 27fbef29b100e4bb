"""Private compute kernels behind the public layers (not part of the public API).

Each module here holds the device-specific passes of one layer; the layer modules choose between them.
Triton is imported lazily, so this package imports without it.
"""
