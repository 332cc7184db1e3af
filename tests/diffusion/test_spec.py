"""SamplerSpec: a config section read once, with unknown names failing there."""

import dataclasses

import numpy as np
import pytest

from hific_diffusion.diffusion import decode, losses


def _cfg(tiny_cfg, **fields):
    cfg = tiny_cfg.copy_and_resolve_references()
    for key, value in fields.items():
        cfg[key] = value
    return cfg


@pytest.mark.parametrize(
    "fields,error,match",
    [
        (dict(sampler="dpm++"), decode.GenerateError, "sampler 'dpm\\+\\+'"),
        (dict(sampler="DDIM"), decode.GenerateError, "sampler"),
        (dict(tile_mode="tiled"), decode.GenerateError, "tile_mode"),
        (dict(target="noise"), losses.LossConfigError, "target"),
    ],
)
@pytest.mark.parametrize("kind", ["diffusion", "flow"])
def test_unknown_names_fail_when_the_config_is_read(tiny_cfg, kind, fields, error, match):
    cfg = _cfg(tiny_cfg, **fields)
    with pytest.raises(error, match=match):
        decode.SamplerSpec.from_config(cfg, kind)
    # check_args (what the Codec runs before decoding any latents) reads it the same way.
    with pytest.raises(error, match=match):
        decode.check_args(cfg, kind)


def test_the_spec_holds_what_runs(tiny_cfg):
    spec = decode.SamplerSpec.from_config(_cfg(tiny_cfg, sampler="ddim"), "diffusion")
    assert (spec.kind, spec.sampler, spec.steps, spec.target) == ("diffusion", "ddim", 4, "image")
    assert spec.clip_x and spec.multiple == 2 and spec.tile_mode == "overlap"
    assert hash(spec) == hash(
        decode.SamplerSpec.from_config(_cfg(tiny_cfg, sampler="ddim"), "diffusion")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.steps = 3
    # The residual target is never clipped to the image range.
    residual = decode.SamplerSpec.from_config(_cfg(tiny_cfg, target="residual"), "diffusion")
    assert residual.target == "residual" and not residual.clip_x
    # The call's arguments override the section's values.
    over = decode.SamplerSpec.from_config(tiny_cfg, "diffusion", 7, 0.5, 0, 0)
    assert (over.steps, over.noise_level, over.tile, over.overlap) == (7, 0.5, 0, 0)
    # The compiled loop's key leaves the (traced) noise level out.
    assert over.loop_key() == dataclasses.replace(over, noise_level=None)
    assert (
        over.loop_key()
        == decode.SamplerSpec.from_config(tiny_cfg, "diffusion", 7, 0.0, 0, 0).loop_key()
    )


def test_each_kind_runs_its_own_sampler_from_a_shared_section(tiny_cfg):
    """One section served both decoders (the default bundle's flow reads
    sampler "ddpm", a flow config's diffusion would read "euler")."""
    run = lambda sampler, kind: decode.SamplerSpec.from_config(
        _cfg(tiny_cfg, sampler=sampler), kind
    )
    assert run("ddpm", "flow").sampler == run("ddim", "flow").sampler == "euler"
    assert run("euler", "diffusion").sampler == "ddpm"
    assert run("ddim", "diffusion").sampler == "ddim"
    # The flow generates the image itself whatever the diffusion target is.
    assert run("euler", "flow").target == "image"
    assert (
        decode.SamplerSpec.from_config(_cfg(tiny_cfg, target="residual"), "flow").target == "image"
    )


def test_generate_rejects_an_unknown_sampler_before_any_work(tiny_cfg, tiny_unet):
    # Before the spec, an unknown sampler silently ran "ddpm".
    x = np.full((1, 8, 8, 3), 0.5, np.float32)
    with pytest.raises(decode.GenerateError, match="sampler"):
        decode.generate(*tiny_unet, x, kind="diffusion", cfg=_cfg(tiny_cfg, sampler="ddmp"))
