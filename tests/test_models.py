"""The model constructors check their config section before building
anything: a section they cannot be built from is their own ModelConfigError
(one line naming the field), which models.py turns into a BundleError for a
bundle (tests/test_bundle.py); nothing else is."""

import ml_collections
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder.elic import ELIC, ELICConfigError
from hific_diffusion.diffusion.unet import UNet, UNetConfigError
from hific_diffusion.errors import ModelConfigError

MISSING = object()


def _section(base: ml_collections.ConfigDict, field: str, value) -> ml_collections.ConfigDict:
    raw = base.to_dict()
    if value is MISSING:
        del raw[field]
    else:
        raw[field] = value
    return ml_collections.ConfigDict(raw)


def _assert_one_line(build, error, fragment):
    with pytest.raises(error) as e:
        build()
    assert isinstance(e.value, ModelConfigError) and isinstance(e.value, ValueError)
    assert fragment in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("N", MISSING, "model.N is missing"),
        ("N", "16", "model.N is '16', expected an integer"),
        ("N", True, "model.N is True, expected an integer"),
        ("N", 16.0, "model.N is 16.0, expected an integer"),
        ("M", 0, "model.M is 0, expected an integer in [1, 65536]"),
        ("N", 1 << 40, "model.N is 1099511627776"),
        ("groups", (4, 4, 8), "model.groups (4, 4, 8) must sum to M=24 (they sum to 16)"),
        ("groups", (0, 24), "model.groups is (0, 24), expected a non-empty list"),
        ("groups", 24, "model.groups is 24, expected a non-empty list"),
        ("channel_context", (), "model.channel_context is (), expected a non-empty list"),
        ("res_blocks", -1, "model.res_blocks is -1, expected an integer in [0, 65536]"),
        ("prior_filters", (3, 0), "model.prior_filters is (3, 0)"),
        ("num_scales", 0, "model.num_scales is 0"),
        ("scale_min", 0.0, "model.scale_min is 0.0, expected a number > 0.0"),
        ("scale_min", float("nan"), "model.scale_min is nan, expected a finite number"),
        ("scale_max", 0.05, "model.scale_max is 0.05, expected a number >= 0.11"),
        ("int_frac_bits", -1, "model.int_frac_bits is -1"),
        ("compute_dtype", "float64", "model.compute_dtype is 'float64', expected one of float32"),
        ("init", "xavier", "model.init is 'xavier', expected one of pytorch, lecun"),
    ],
)
def test_an_elic_section_it_cannot_be_built_from_is_one_line_naming_the_field(
    field, value, fragment
):
    cfg = _section(configs.load("tiny").model, field, value)
    _assert_one_line(lambda: ELIC(cfg, rngs=nnx.Rngs(0)), ELICConfigError, fragment)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("head_dim", MISSING, "unet.head_dim is missing"),
        ("base_channels", 0, "unet.base_channels is 0, expected an integer in [1, 65536]"),
        ("base_channels", "16", "unet.base_channels is '16', expected an integer"),
        ("base_channels", 15, "unet.base_channels * channel_mult[0] = 15 must be even"),
        ("channel_mult", (), "unet.channel_mult is (), expected a non-empty list"),
        ("channel_mult", (1, -2), "unet.channel_mult is (1, -2)"),
        ("num_res_blocks", -1, "unet.num_res_blocks is -1, expected an integer in [0, 65536]"),
        ("attn_resolutions", (16, 0), "unet.attn_resolutions is (16, 0)"),
        ("resolution", 0, "unet.resolution is 0"),
        ("mid_attention", "yes", "unet.mid_attention is 'yes', expected true or false"),
        ("head_dim", 10, "unet: 32 channels do not split into 3 attention heads (head_dim=10)"),
        ("norm_groups", 0, "unet.norm_groups is 0"),
        ("dropout", 1.0, "unet.dropout is 1.0, expected a number < 1.0"),
        ("dropout", -0.1, "unet.dropout is -0.1, expected a number >= 0.0"),
        ("fourier_scale", None, "unet.fourier_scale is null, expected a finite number"),
        ("out_channels", 1, "unet.out_channels is 1, expected 3"),
        ("compute_dtype", "int8", "unet.compute_dtype is 'int8', expected a float dtype name"),
        ("param_dtype", "f33", "unet.param_dtype is 'f33', expected a float dtype name"),
    ],
)
def test_a_unet_section_it_cannot_be_built_from_is_one_line_naming_the_field(
    field, value, fragment
):
    cfg = _section(configs.load("tiny").diffusion.unet, field, value)
    _assert_one_line(lambda: UNet(cfg, rngs=nnx.Rngs(0)), UNetConfigError, fragment)


def test_channel_counts_need_not_be_multiples_of_norm_groups():
    """GroupNorm takes the largest divisor of its channels up to norm_groups."""
    cfg = _section(configs.load("tiny").diffusion.unet, "norm_groups", 5)
    nnx.eval_shape(lambda: UNet(cfg, rngs=nnx.Rngs(0)))
