"""The trainer loop in-process: resume, logs and samples, non-finite stop, optimizer.

Stage-2 end-to-end training is marked slow (two models to compile).
"""

import json

import jax
import numpy as np
import pytest

from hific_diffusion import configs
from hific_diffusion.train import optim, trainer


def _config(**kw):
    base = {
        "train.batch_size": 2,
        "train.log_every": 1,
        "train.ckpt_every": 3,
        "train.num_samples": 0,
        "data.crop": 64,
    }
    return configs.load("tiny:autoencoder", {**base, **kw})


def _run(workdir, **kw):
    return trainer.run(_config(**kw), workdir, devices=jax.devices("cpu")[:2])


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def test_rerun_resumes_and_matches_uninterrupted_losses(tmp_path, capsys):
    _run(tmp_path / "ref", **{"train.steps": 5})
    _run(tmp_path / "run", **{"train.steps": 3})
    _run(tmp_path / "run", **{"train.steps": 5})
    assert "resumed from step 3" in capsys.readouterr().out
    want, got = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
    assert sorted(got) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([got[4], got[5]], [want[4], want[5]], rtol=1e-6)


def test_run_writes_jsonl_tensorboard_samples_and_profile(tmp_path, capsys):
    trainer.run(
        _config(**{"train.steps": 4, "train.num_samples": 2, "train.ckpt_every": 2}),
        tmp_path,
        profile_steps=1,
        devices=jax.devices("cpu")[:1],
    )
    out = capsys.readouterr().out
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 4
    assert {"loss", "bpp", "psnr", "steps_per_s", "images_per_s", "eta_s"} <= set(rec)
    assert "4/4" in out  # progress on stdout: the step out of the total
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    pngs = sorted((tmp_path / "samples").glob("*.png"))
    assert [p.name for p in pngs] == ["step_00000002.png", "step_00000004.png"]
    assert any(f.is_file() for f in (tmp_path / "profile").rglob("*"))


def test_nonfinite_steps_are_reported_then_stop_training(tmp_path, capsys):
    # A NaN learning rate makes every update non-finite: each is skipped and
    # reported, and the run stops after max_nonfinite in a row.
    with pytest.raises(trainer.TrainingError, match="3 consecutive non-finite steps"):
        _run(tmp_path, **{"train.steps": 10, "train.lr": float("nan"), "train.max_nonfinite": 3})
    err = capsys.readouterr().err
    assert "step 1: non-finite loss or gradients, update skipped (1 in a row" in err


def test_warmup_then_cosine_schedule():
    cfg = _config(**{"train.lr": 1.0, "train.warmup_steps": 10, "train.steps": 110})
    cfg.train.schedule = "cosine"
    lr = optim.schedule(cfg.train)
    np.testing.assert_allclose(
        [lr(0), lr(5), lr(10), lr(60), lr(110)], [0, 0.5, 1, 0.5, 0], atol=1e-6
    )
    cfg.train.schedule = "linear"
    with pytest.raises(optim.OptimizerError):
        optim.schedule(cfg.train)


def test_ema_moves_toward_params_by_one_minus_decay():
    ema = optim.ema_update({"w": np.zeros(3, np.float32)}, {"w": np.ones(3, np.float32)}, 0.9)
    np.testing.assert_allclose(ema["w"], 0.1, rtol=1e-6)


def test_ema_warmup_forgets_the_initial_weights_and_ends_at_the_decay():
    decays = [float(optim.ema_decay_at(t, 0.999, 10)) for t in (0, 10, 100, 10**5)]
    assert decays[0] == pytest.approx(0.1) and decays[1] == pytest.approx(11 / 20)
    assert decays[2] < 0.92 and decays[3] == pytest.approx(0.999)
    assert optim.ema_decay_at(5, 0.999, 0) == 0.999
    # what the warmup is for: after 3,000 steps toward new weights, the share of
    # the initial weights left in the EMA
    ema_plain = ema_warm = 1.0
    for t in range(3000):
        ema_plain *= 0.999
        ema_warm *= float(optim.ema_decay_at(t, 0.999, 10))
    assert ema_plain > 0.04 and ema_warm < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["diffusion", "flow"])
def test_stage2_trains_on_frozen_stage1_reconstruction(tmp_path, kind):
    _run(tmp_path / "ae", **{"train.steps": 2})
    config = configs.load(
        f"tiny:{kind}",
        {
            "train.batch_size": 2,
            "train.steps": 2,
            "train.log_every": 1,
            "train.num_samples": 0,
            "train.autoencoder_checkpoint": str(tmp_path / "ae"),
        },
    )
    last = trainer.run(config, tmp_path / kind, devices=jax.devices("cpu")[:2])
    assert last["finite"] == 1.0 and np.isfinite(last["loss"])
    _, params = trainer.checkpoint.restore_params(tmp_path / kind)
    assert "unet" in params


def test_stage2_without_stage1_checkpoint_is_a_clear_error(tmp_path):
    config = configs.load("tiny:flow", {"train.batch_size": 2})
    with pytest.raises(trainer.tasks.TaskError, match="autoencoder_checkpoint"):
        trainer.run(config, tmp_path, devices=jax.devices("cpu")[:1])
    config.train.autoencoder_checkpoint = str(tmp_path / "missing")
    with pytest.raises(trainer.checkpoint.CheckpointError, match="not a training workdir"):
        trainer.run(config, tmp_path, devices=jax.devices("cpu")[:1])


def test_init_from_starts_a_fresh_run_from_another_runs_ema_weights(tmp_path, capsys):
    from hific_diffusion.train import checkpoint, tasks

    _run(tmp_path / "src", **{"train.steps": 3, "train.ema_decay": 0.5})
    # lr 0: the new run's weights can only be what it started from.
    _run(tmp_path / "dst", **{"train.steps": 1, "train.init_from": str(tmp_path / "src"),
                              "train.lr": 0.0, "train.warmup_steps": 0})  # fmt: skip
    assert "starting from the weights of" in capsys.readouterr().out
    _, src = checkpoint.restore_params(tmp_path / "src", which="ema")
    _, dst = checkpoint.restore_params(tmp_path / "dst", which="params")
    _, fresh = checkpoint.restore_params(tmp_path / "src", which="params")
    a, b = src["autoencoder"].to_pure_dict(), dst["autoencoder"].to_pure_dict()
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # ...and those are the source's EMA weights, not its raw ones
    assert not all(
        jax.tree.leaves(jax.tree.map(np.array_equal, a, fresh["autoencoder"].to_pure_dict()))
    )
    with pytest.raises(tasks.TaskError, match="differs"):
        _run(tmp_path / "other", **{"train.steps": 1, "train.init_from": str(tmp_path / "src"),
                                    "model.N": 8})  # fmt: skip


def test_init_from_a_bundle_starts_from_its_model_of_this_task(tmp_path, capsys):
    """A run continues from the weights a bundle ships (e.g. the default
    model, trained further in a later session): its autoencoder, exactly."""
    from hific_diffusion import export
    from hific_diffusion.pipeline import Codec
    from hific_diffusion.train import checkpoint, tasks

    _run(tmp_path / "src", **{"train.steps": 3})
    bundle = export.export([tmp_path / "src"], tmp_path / "bundle")
    _run(tmp_path / "dst", **{"train.steps": 1, "train.init_from": str(bundle),
                              "train.lr": 0.0, "train.warmup_steps": 0})  # fmt: skip
    assert "starting from the weights of" in capsys.readouterr().out
    _, src = checkpoint.restore_params(tmp_path / "src", which="ema")
    _, dst = checkpoint.restore_params(tmp_path / "dst", which="params")
    jax.tree.map(
        np.testing.assert_array_equal,
        src["autoencoder"].to_pure_dict(),
        dst["autoencoder"].to_pure_dict(),
    )
    # a bundle without a model of the task is a clear error
    config = configs.load("tiny:flow", {"train.batch_size": 2, "train.init_from": str(bundle),
                                        "train.autoencoder_checkpoint": str(bundle)})  # fmt: skip
    with pytest.raises(tasks.TaskError, match="has no 'flow' model"):
        trainer.run(config, tmp_path / "flow", devices=jax.devices("cpu")[:1])
    assert Codec.load(bundle).decoders == ("mse",)


def test_itstime_every_n_steps_and_after_the_last_never_for_zero():
    due = [d for d in range(1, 11) if trainer.itstime(d, 4, 10)]
    assert due == [4, 8, 10]
    assert [d for d in range(1, 11) if trainer.itstime(d, 0, 10)] == [10]


@pytest.mark.slow
def test_hfdplus_trains_on_its_energy_map_exports_and_decodes(tmp_path):
    """HFD+ end to end: the real trainer fits a tiny hfdplus U-Net (the map
    computed from each crop and its x_mse), writes samples with it, and the
    exported bundle compresses with the map as side information and decodes."""
    from hific_diffusion import export
    from hific_diffusion.pipeline import Codec

    _run(tmp_path / "ae", **{"train.steps": 2})
    config = configs.load(
        "tiny:hfdplus",
        {
            "train.batch_size": 2,
            "train.steps": 2,
            "train.log_every": 1,
            "train.num_samples": 1,
            "diffusion.steps": 2,
            "train.autoencoder_checkpoint": str(tmp_path / "ae"),
        },
    )
    last = trainer.run(config, tmp_path / "hfdplus", devices=jax.devices("cpu")[:2])
    assert last["finite"] == 1.0 and np.isfinite(last["loss"])
    assert list((tmp_path / "hfdplus" / "samples").glob("*.png"))
    path = export.export([tmp_path / "ae", tmp_path / "hfdplus"], tmp_path / "bundle")
    codec = Codec.load(path)
    assert codec.decoders == ("mse", "hfdplus")
    x = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    data = codec.compress(x, decoders=("hfdplus",))
    assert codec.read_header(data)[0].side_info("hfdplus") is not None
    assert codec.decompress(data, decoder="hfdplus").shape == x.shape


def test_each_decoder_task_needs_its_side_channels():
    from flax import nnx

    from hific_diffusion.train import tasks

    with pytest.raises(tasks.TaskError, match="side_channels = 3, got 0"):
        tasks.get_task("hfdplus").build(configs.load("tiny:diffusion"), nnx.Rngs(0))
    with pytest.raises(tasks.TaskError, match="side_channels = 0, got 3"):
        tasks.get_task("diffusion").build(configs.load("tiny:hfdplus"), nnx.Rngs(0))


@pytest.mark.slow
def test_hific_trains_exports_and_decodes_the_same_bitstream(tmp_path):
    """HiFiC end to end: the trainer fits the tiny generator and
    discriminator against a frozen stage 1, writes samples, the export holds
    a hific decoder with its gan section, and a file compressed once decodes
    with mse and with hific (no side information, the same bytes)."""
    from hific_diffusion import bundle, export
    from hific_diffusion.coding import bitstream
    from hific_diffusion.pipeline import Codec

    _run(tmp_path / "ae", **{"train.steps": 2})
    config = configs.load(
        "tiny:hific",
        {
            "train.batch_size": 2,
            "train.steps": 2,
            "train.ema_decay": 0.0,  # export the trained weights, not a 2-step average
            "train.log_every": 1,
            "train.num_samples": 1,
            "train.autoencoder_checkpoint": str(tmp_path / "ae"),
        },
    )
    last = trainer.run(config, tmp_path / "hific", devices=jax.devices("cpu")[:2])
    assert last["finite"] == 1.0 and np.isfinite(last["loss"]) and np.isfinite(last["d_loss"])
    assert list((tmp_path / "hific" / "samples").glob("*.png"))
    path = export.export([tmp_path / "ae", tmp_path / "hific"], tmp_path / "bundle")
    b = bundle.load_bundle(path)
    assert set(b.models) == {"autoencoder", "hific"}
    assert b.models["hific"].config.disc_layers == config.gan.disc_layers
    codec = Codec.load(path)
    assert codec.decoders == ("mse", "hific")
    x = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    data = codec.compress(x, decoder="hific")
    assert codec.read_header(data)[0].decoder == "hific"
    # Same latents, same length as the mse-hinted file: no extra bits.
    plain = codec.compress(x)
    assert len(plain) == len(data) and bitstream.unpack(plain)[1] == bitstream.unpack(data)[1]
    out = codec.decompress(data)  # the header's hint
    assert out.shape == x.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(codec.decompress(data, decoder="hific"), out)
    # The generator, not g_s, rendered it: after two steps it differs from x_mse.
    assert not np.array_equal(out, codec.decompress(data, decoder="mse"))
