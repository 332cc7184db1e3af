"""The config system: names, paths, args, overrides and the entry points' flags."""

import subprocess
import sys

import pytest

from hific_diffusion import configs, errors

EXPECTED = {
    "elic_mse", "hfd", "hfd_rf", "clic20", "clic22", "coco30k", "kodak", "tiny", "demo", "cdc",
}  # fmt: skip


def test_every_documented_config_is_available_and_loads():
    assert EXPECTED <= set(configs.available())
    for name in configs.available():
        config = configs.load(name)
        assert config.name.split(":")[0] == name
        assert config.task in ("autoencoder", "diffusion", "flow", "cdc")


def test_cdc_variants_keep_cdc_s_structure_at_every_scale():
    # configs/cdc.py: paper scale and the CPU-scale demo / tiny variants, each
    # the cdc task, decoding with its own decoder; the U-Net's first levels
    # take the finest context features.
    for arg in ("paper", "demo", "tiny"):
        config = configs.load(f"cdc:{arg}")
        assert config.task == "cdc" and tuple(config.eval.decoders) == ("cdc",)
        c = config.cdc
        assert len(c.encoder_widths) == len(c.context_widths) == 4
        ctx = tuple(c.unet.context_channels)
        assert ctx == tuple(reversed(c.context_widths))[: len(ctx)]
        assert c.unet.cond_channels == 0 and c.scale_min == 0.1 and c.init_scale == 0.8
    paper = configs.load("cdc").cdc
    assert tuple(paper.encoder_widths) == (64, 128, 192, 256) and paper.steps == 65
    assert [64 * m for m in paper.unet.channel_mult] == [64, 128, 192, 256, 320, 384]
    with pytest.raises(errors.UsageError, match="cdc:huge"):
        configs.load("cdc:huge")


def test_name_arg_reaches_get_config():
    assert configs.load("elic_mse:0.25").model.lmbda != configs.load("elic_mse:0.06").model.lmbda
    assert configs.load("tiny:flow").task == "flow"


def test_unknown_name_lists_available_names():
    with pytest.raises(configs.ConfigError, match="available: .*tiny"):
        configs.resolve("nosuchname")


def test_path_spelling_loads_the_same_config(tmp_path):
    path = configs.config_dir() / "tiny.py"
    assert configs.load(str(path)).to_dict() == configs.load("tiny").to_dict()


def test_overrides_parse_like_the_command_line():
    config = configs.load("tiny", ["train.steps=7", "model.lmbda=1", "data.source=folder"])
    assert config.train.steps == 7
    assert config.model.lmbda == 1.0 and isinstance(config.model.lmbda, float)
    assert config.data.source == "folder"
    with pytest.raises(configs.ConfigError, match="no config field"):
        configs.load("tiny", ["train.nosuchfield=1"])


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args,flag",
    [
        (["hific_diffusion.eval", "--config=clic22", "--help"], "--bundle"),
        (["hific_diffusion.train", "--config=tiny", "--help"], "--workdir"),
    ],
)
def test_entry_points_print_their_flags_from_any_directory(args, flag, tmp_path):
    result = _run(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert flag in result.stdout + result.stderr


@pytest.mark.parametrize("module", ["hific_diffusion.eval", "hific_diffusion.train"])
def test_unknown_config_is_a_one_line_error(module, tmp_path):
    result = _run([module, "--config=nosuchname", "--workdir=x"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchname" in lines[0] and "clic22" in lines[0]


def test_train_bad_config_value_is_a_one_line_error_with_exit_2(tmp_path):
    result = _run(
        ["hific_diffusion.train", "--config=tiny", f"--workdir={tmp_path / 'w'}",
         "--config.train.optimizer=nope", "--config.train.batch_size=8"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "optimizer" in errors[0]


# What each named config's docstring promises, field by field.
@pytest.mark.parametrize(
    "name,dataset,fid_patch",
    [("clic20", "clic20", 256), ("clic22", "clic22", 256), ("kodak", "kodak", 256),
     ("coco30k", "coco30k", 0)],
)  # fmt: skip
def test_eval_protocols_evaluate_every_decoder_with_their_fid_protocol(name, dataset, fid_patch):
    config = configs.load(name)
    assert config.eval.dataset == dataset
    assert set(config.eval.decoders) == {"mse", "diffusion", "flow"}
    assert config.eval.fid_patch == fid_patch  # coco30k: "FID over whole images"


def test_hfd_rate_argument_picks_the_stage1_model_and_its_checkpoint():
    low, high = configs.load("hfd:0.06"), configs.load("hfd:0.40")
    assert low.model.lmbda == configs.load("elic_mse:0.06").model.lmbda
    assert high.model.lmbda == configs.load("elic_mse:0.40").model.lmbda != low.model.lmbda
    assert low.train.autoencoder_checkpoint != high.train.autoencoder_checkpoint
    assert configs.load("hfd_rf:0.40").train.autoencoder_checkpoint == (
        high.train.autoencoder_checkpoint
    )
    with pytest.raises(configs.ConfigError, match="unknown rate"):
        configs.load("hfd:0.33")


def test_hfd_rf_is_hfd_with_a_few_step_flow():
    hfd, rf = configs.load("hfd"), configs.load("hfd_rf")
    assert rf.task == "flow" and hfd.task == "diffusion"
    assert (rf.diffusion.steps, hfd.diffusion.steps) == (8, 250)
    assert rf.diffusion.unet.to_dict() == hfd.diffusion.unet.to_dict()


def test_photos_rates_are_separate_models_and_stage2_reads_its_own_rate():
    low, high = configs.load("photos:autoencoder:0.15"), configs.load("photos:autoencoder:0.6")
    assert low.model.lmbda < configs.load("photos").model.lmbda < high.model.lmbda
    stage2 = configs.load("photos:diffusion:0.6")
    assert stage2.task == "diffusion" and stage2.train.autoencoder_checkpoint.endswith("ae_0.6")
    assert stage2.model.to_dict() == high.model.to_dict()
    with pytest.raises(configs.ConfigError, match="unknown rate"):
        configs.load("photos:autoencoder:0.45")


def test_a_rate_the_config_rejects_is_a_one_line_error_with_exit_2(tmp_path):
    result = _run(["hific_diffusion.train", "--config=hfd:0.33", "--workdir=w"], cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "0.33" in line and "0.60" in line  # the choices


def test_a_config_saved_before_a_field_existed_reads_it_from_the_section_defaults(tmp_path):
    """One home for defaults: the code reads fields directly, checkpoint and
    bundle loading fill what an older config lacks from defaults.py."""
    import json

    from hific_diffusion.train import checkpoint

    old = configs.load("tiny:diffusion").to_dict()
    del old["diffusion"]["residual_scale"], old["model"]["prior_filters"], old["diffusion"]["unet"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = checkpoint.load_config(tmp_path)
    base = configs.base_config()
    assert loaded.diffusion.residual_scale == base.diffusion.residual_scale == 0.25
    assert loaded.model.prior_filters == base.model.prior_filters
    assert loaded.diffusion.unet.to_dict() == base.diffusion.unet.to_dict()
    assert loaded.model.N == configs.load("tiny").model.N  # what it had stays


@pytest.mark.parametrize("name", ["tiny:hific", "demo:hific", "photos:hific:0.15", "photos:hific"])
def test_hific_configs_give_the_generator_the_autoencoders_g_s_shape(name):
    """The generator starts from the frozen g_s, so its shape must be the
    autoencoder's; the CPU configs train on small crops."""
    c = configs.load(name)
    assert c.task == "hific"
    assert (c.gan.N, c.gan.M, c.gan.res_blocks) == (c.model.N, c.model.M, c.model.res_blocks)
    assert c.data.crop in (64, 128)
    if not name.startswith("tiny"):
        assert c.train.batch_size == 8 and c.train.autoencoder_checkpoint
