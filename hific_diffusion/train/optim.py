"""Optimizer, learning-rate schedule and EMA of the parameters.

ELIC (He et al. 2022, Sec. 4.1) and HFD (Sec. 4) train with Adam; the
schedule is linear warm-up then constant or cosine decay. Updates pass
through global-norm clipping first, since the rate term's gradients spike
early in training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from hific_diffusion.errors import HfdError


class OptimizerError(HfdError, ValueError):
    """An optimizer or schedule setting that cannot be used."""


def schedule(cfg) -> optax.Schedule:
    """Linear warm-up to ``cfg.lr``, then constant or cosine to ``lr * min_lr_ratio``."""
    warmup = max(int(cfg.warmup_steps), 0)
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        decay_steps = max(int(cfg.steps) - warmup, 1)
        after = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
    else:
        raise OptimizerError(f"unknown schedule {cfg.schedule!r}; use 'constant' or 'cosine'")
    if warmup == 0:
        return after
    ramp = optax.linear_schedule(0.0, cfg.lr, warmup)
    return optax.join_schedules([ramp, after], [warmup])


def make_optimizer(cfg) -> optax.GradientTransformation:
    """``cfg`` is ``config.train``."""
    lr = schedule(cfg)
    if cfg.optimizer == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    elif cfg.optimizer == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    else:
        raise OptimizerError(f"unknown optimizer {cfg.optimizer!r}; use 'adam' or 'adamw'")
    if cfg.grad_clip and cfg.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt


def ema_update(ema, params, decay: float):
    """``ema <- decay * ema + (1 - decay) * params`` leaf by leaf (in float32)."""
    return jax.tree.map(lambda e, p: e * decay + (1.0 - decay) * p.astype(e.dtype), ema, params)


def ema_decay_at(step, decay: float, warmup: int):
    """The EMA decay at ``step`` (0-based): ``min(decay, (1 + step) / (warmup + step))``
    with ``warmup`` > 0, else ``decay``. Without a warmup an EMA started at the
    initial weights keeps ``decay ** step`` of them (5% after 3,000 steps at
    0.999): on a short run that mix of random weights is what gets exported
    (a held-out photo model at 3,000 steps: 16 dB instead of 25 dB)."""
    if warmup <= 0:
        return decay
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (warmup + step))


def all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
