"""Build a module's structure without computing its initial values.

Loading a bundle or checkpoint builds the module from its config and then
overwrites every parameter. Computing the initial values first is wasted
work (an XLA compile per weight shape eagerly, a trace of every initializer
under ``nnx.eval_shape``: seconds for ELIC). Inside :func:`skeleton` the
initializers of this package return numpy zeros of the right shape and dtype
instead; nothing else about the module changes.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

_ACTIVE = contextvars.ContextVar("skeleton", default=False)


@contextlib.contextmanager
def skeleton():
    """Modules built inside hold zeros (to be overwritten), built at numpy speed."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    return _ACTIVE.get()


def zeros(shape, dtype=np.float32) -> np.ndarray:
    return np.zeros(tuple(shape), np.dtype(dtype))


def zeros_init(key, shape, dtype=np.float32):
    """A flax-initializer signature that returns zeros (for flax layers)."""
    del key
    return zeros(shape, dtype)


def flax_init_kwargs(*names: str) -> dict:
    """``{name: zeros_init}`` for a flax layer's initializer arguments while a
    skeleton is built, ``{}`` otherwise (the layer keeps its defaults)."""
    return {n: zeros_init for n in names} if active() else {}
