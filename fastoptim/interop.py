"""``fastoptim.interop``: the public home of :func:`to_torch` and :func:`from_torch`.

The code lives in :mod:`fastoptim.io.interop`.
"""

from fastoptim.io.interop import from_torch, to_torch

__all__ = ["to_torch", "from_torch"]
