"""A module's variables as flat ``{"path/to/leaf": numpy array}`` dicts.

The form weights take in a bundle (``weights/<model>.npz``), in a
checkpoint-built Codec and in the CompressAI import.
"""

from __future__ import annotations

import numpy as np

SEP = "/"


def key(path) -> str:
    """``("a", 0, "kernel")`` -> ``"a/0/kernel"``."""
    return SEP.join(map(str, path))


def flatten_state(state) -> dict[str, np.ndarray]:
    """nnx.State or nested dict -> {"path/to/leaf": numpy array}.

    RNG variables (keys and counters) are dropped: inference needs none.
    Plain-array attributes (e.g. convolution masks) are kept, so a loader
    can fill an abstract module without running its initializers.
    """
    # flax on use: bundle.py imports this module, and reading a bundle (or
    # failing to: a wrong --model path) should not wait ~0.7 s for flax.
    from flax import nnx, traverse_util

    if isinstance(state, nnx.State):
        flat = {}
        for path, var in nnx.to_flat_state(state):
            if isinstance(var, nnx.RngState):
                continue
            value = var.get_value() if isinstance(var, nnx.Variable) else var
            flat[key(path)] = np.asarray(value)
        return flat
    return {key(k): np.asarray(v) for k, v in traverse_util.flatten_dict(dict(state)).items()}
