"""Matmul and convolution FLOPs of a JAX function, read from its jaxpr.

XLA's cost analysis on GPU leaves out cuDNN convolutions, so benchmarks
count FLOPs from the traced program instead: 2 FLOPs per multiply-add of
every ``dot_general`` and ``conv_general_dilated`` (elementwise work, norms
and softmax are not counted, as is usual for achieved-TFLOP/s figures).
"""

from __future__ import annotations

import math

import jax
from jax.extend import core as jex


def _conv_flops(eqn) -> int:
    out = eqn.outvars[0].aval.shape
    rhs = eqn.invars[1].aval.shape
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
    kernel = math.prod(rhs[d] for d in spec[2:]) * rhs[spec[1]]
    return 2 * math.prod(out) * kernel


def _dot_flops(eqn) -> int:
    (lc, _), _ = eqn.params["dimension_numbers"]
    lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
    return 2 * math.prod(out) * math.prod(lhs[d] for d in lc)


def jaxpr_flops(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "dot_general":
            total += _dot_flops(eqn)
        else:
            mult = eqn.params.get("length", 1) if name == "scan" else 1
            for sub in jex.jaxprs_in_params(eqn.params):
                total += mult * jaxpr_flops(sub)
    return total


def count_flops(fn, *args) -> int:
    """FLOPs of ``fn(*args)`` (arrays or ``jax.ShapeDtypeStruct``); nothing is run."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)
