"""data.reconstructions: the photos' x_mse computed once by the codec, paired
with the photos for stage-2 training, and refused when stale."""

import json

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from hific_diffusion import bundle, configs, images
from hific_diffusion.data import pipeline, reconstructions
from hific_diffusion.pipeline import Codec
from hific_diffusion.train import sharding as shd
from hific_diffusion.train import state as train_state
from hific_diffusion.train import step, tasks, trainer


@pytest.fixture(scope="module")
def made(tmp_path_factory, trained_tiny, photo_list):
    """(photo folder, bundle of the trained tiny autoencoder, its reconstructions)."""
    root = tmp_path_factory.mktemp("recon")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    # Two sizes that are not multiples of the codec's 64 px padding.
    Image.fromarray(images.to_uint8(photo_list[1][40:140, 60:232])).save(photos / "coffee.png")
    Image.fromarray(images.to_uint8(photo_list[0][100:180, 150:250])).save(photos / "sub/a.png")
    model = bundle.save_codec(root / "bundle", Codec(configs.load("tiny"), trained_tiny[0]))
    out = reconstructions.build(str(model), str(photos), str(root / "x_mse"), progress=False)
    return photos, model, out


def test_each_photo_gets_the_codecs_decoding_of_its_whole_file(made):
    photos, model, out = made
    codec = Codec.load(model)
    for rel in ("coffee.png", "sub/a.png"):
        x = images.load(photos / rel)
        want = images.to_uint8(codec.decompress_mse(codec.compress(x))[1][0])
        got = np.asarray(Image.open(out / f"{rel}.png"))
        np.testing.assert_array_equal(got, want)
        # a reconstruction of this photo: not the photo, nearer it than a shifted copy
        err = np.abs(got.astype(int) - x).mean()
        assert 0 < err < np.abs(got.astype(int) - np.roll(x, 17, axis=1)).mean()
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["photos"]) == ["coffee.png", "sub/a.png"]
    # a rerun for the same autoencoder and photos rewrites nothing
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*.png")}
    reconstructions.build(str(model), str(photos), str(out), progress=False)
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*.png")} == stamps


def test_batches_crop_photo_and_x_mse_at_the_same_window(made):
    photos, _, out = made
    cfg = configs.load("tiny").data
    cfg.update(source="folder", path=str(photos), crop=48, reconstructions=str(out))
    batch = next(iter(pipeline.make_dataset(cfg, 4, 0, pipeline.shard_options(0, 1))))
    assert batch.shape == (4, 48, 48, 6) and batch.dtype == np.uint8
    pairs = {
        rel: (images.load(photos / rel), np.asarray(Image.open(out / f"{rel}.png")))
        for rel in ("coffee.png", "sub/a.png")
    }
    for item in batch:
        x, x_mse = item[..., :3], item[..., 3:]
        hits = []
        for photo, rec in pairs.values():
            for p, r in ((photo, rec), (photo[:, ::-1], rec[:, ::-1])):
                for t in range(p.shape[0] - 47):
                    for left in range(p.shape[1] - 47):
                        if np.array_equal(p[t : t + 48, left : left + 48], x):
                            hits.append(r[t : t + 48, left : left + 48])
        assert hits, "the photo channels are not a crop of a photo"
        assert any(np.array_equal(h, x_mse) for h in hits)


def test_stale_or_foreign_reconstructions_are_refused(made, tmp_path, tiny_model):
    photos, _, out = made
    other = nnx.state(tiny_model)  # an untrained autoencoder of the same shape
    with pytest.raises(reconstructions.ReconstructionsError, match="another autoencoder"):
        reconstructions.check_autoencoder(out, other)
    src = pipeline.make_source(_folder_cfg(photos))
    # a photo changed after the reconstructions were made
    changed = tmp_path / "changed"
    changed.mkdir()
    x = images.load(photos / "coffee.png")
    Image.fromarray(255 - x).save(changed / "coffee.png")
    with pytest.raises(reconstructions.ReconstructionsError, match="changed"):
        reconstructions.PairedSource(pipeline.make_source(_folder_cfg(changed)), out)
    # a photo without a reconstruction
    (changed / "coffee.png").write_bytes((photos / "coffee.png").read_bytes())
    Image.fromarray(x).save(changed / "new.png")
    with pytest.raises(reconstructions.ReconstructionsError, match="no reconstruction of"):
        reconstructions.PairedSource(pipeline.make_source(_folder_cfg(changed)), out)
    # a damaged reconstruction file is caught when it is read
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in out.rglob("*"):
        if f.is_file():
            (broken / f.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            (broken / f.relative_to(out)).write_bytes(f.read_bytes())
    (broken / "coffee.png.png").write_bytes(b"\x89PNG broken")
    paired = reconstructions.PairedSource(src, broken)
    with pytest.raises(reconstructions.ReconstructionsError, match="corrupt"):
        paired[src.files.index(photos / "coffee.png")]
    with pytest.raises(reconstructions.ReconstructionsError, match="not a reconstructions"):
        reconstructions.PairedSource(src, photos)


def _folder_cfg(path, **kw):
    cfg = configs.load("tiny").data
    cfg.update(source="folder", path=str(path), **kw)
    return cfg


def test_the_trainer_checks_the_folder_before_it_compiles(made, tmp_path):
    photos, model, out = made
    config = configs.load("tiny:diffusion", {"train.batch_size": 2})
    config.data.update(source="folder", path=str(photos), crop=32, reconstructions=str(out))
    config.train.autoencoder_checkpoint = str(tmp_path / "other")
    bundle.save_codec(tmp_path / "other", Codec(configs.load("tiny"), _untrained()))
    with pytest.raises(reconstructions.ReconstructionsError, match="another autoencoder"):
        trainer.run(config, tmp_path / "run", devices=jax.devices("cpu")[:1])
    config = configs.load("tiny:autoencoder", {"train.batch_size": 2})
    config.data.reconstructions = str(out)
    with pytest.raises(tasks.TaskError, match="does not"):
        trainer.run(config, tmp_path / "run_ae", devices=jax.devices("cpu")[:1])


def _untrained():
    from hific_diffusion.autoencoder.elic import ELIC

    return ELIC(configs.load("tiny").model, rngs=nnx.Rngs(7))


def test_the_step_conditions_on_the_paired_x_mse(trained_tiny, photo_list):
    """A six-channel batch's x_mse is what the loss sees: the same loss as
    running the frozen autoencoder when it holds that reconstruction, another
    loss when it holds something else."""
    # the residual target: the loss depends on x_mse through the target too
    config = configs.load("tiny:diffusion", {"train.batch_size": 2, "diffusion.target": "residual"})
    task = tasks.get_task("diffusion")
    mesh = shd.make_mesh(devices=jax.devices("cpu")[:1])
    s = train_state.setup(task, config, mesh)
    state = train_state.init(s, task, config)
    graphdef, frozen = nnx.split(trained_tiny[0])
    fn = jax.jit(step.make_step_fn(task, config, s.graphdef, s.tx, graphdef))
    x = images.to_uint8(np.stack([p[100:164, 200:264] for p in photo_list[:2]]))
    x_mse = images.to_uint8(np.asarray(tasks.reconstruct(trained_tiny[0], images.to_unit(x))))

    def loss(batch):
        return float(fn(state, s.rest, batch, frozen)[1]["loss"])

    on_the_fly = loss(x)
    cached = loss(np.concatenate([x, x_mse], axis=-1))
    grey = loss(np.concatenate([x, np.full_like(x, 128)], axis=-1))
    # x_mse rounded to 8 bits: the same loss up to that rounding
    assert abs(cached - on_the_fly) < 0.02 * on_the_fly
    assert abs(grey - on_the_fly) > 10 * abs(cached - on_the_fly)
