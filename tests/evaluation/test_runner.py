"""End to end with the real ``pipeline.Codec``: table, JSON, CSV and plots written; resumes.

The Codec is the ``tiny`` config's ELIC at random init (no trained bundle is
needed to prove the plumbing; the numbers are meaningless). ``Interruptible``
wraps it to count compress calls and to stop a run part-way, as Ctrl-C would.
"""

import json

import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.diffusion.unet import UNet
from hific_diffusion.evaluation import runner
from hific_diffusion.pipeline import Codec


@pytest.fixture(scope="module")
def codec():
    return runner.random_codec(configs.load("tiny"))


class Interruptible:
    """The real Codec; counts compress calls, raises KeyboardInterrupt after ``stop_after``."""

    def __init__(self, codec, stop_after=None):
        self.codec, self.stop_after, self.compressed = codec, stop_after, []
        self.decoders = codec.decoders

    def compress(self, image, **kw):
        if self.stop_after is not None and len(self.compressed) >= self.stop_after:
            raise KeyboardInterrupt("simulated interruption")
        self.compressed.append(image.shape)
        return self.codec.compress(image, **kw)

    def estimate_bpp(self, image):
        return self.codec.estimate_bpp(image)

    def decompress(self, data, **kw):
        return self.codec.decompress(data, **kw)

    def model_digest(self):
        return self.codec.model_digest()


def _config(name, **eval_overrides):
    config = configs.load(name)
    config.eval.decoders = ("mse",)
    config.eval.baselines = ("jpeg",)
    config.eval.fid_weights = "/nonexistent/inception.pth"  # FID skipped unless a test asks
    config.eval.fid_patch = 0
    config.eval.kid_subsets = 5
    for k, v in eval_overrides.items():
        setattr(config.eval, k, v)
    return config


def _written(out):
    for f in ("summary.json", "per_image.csv", "per_image.json", "per_image.jsonl", "rd.png",
              "rate_fid.png"):  # fmt: skip
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f


def test_tiny_end_to_end_writes_table_json_csv_and_plots(tmp_path, capsys, codec):
    config = _config("tiny", save_reconstructions=True, fid_weights="random", max_images=2)
    summary = runner.run(config, out=tmp_path, codec=codec)
    _written(tmp_path)
    table = capsys.readouterr().out
    assert "decoder" in table and "mse" in table and "jpeg" in table
    dec = summary["decoders"]
    assert set(dec) == {"mse", "jpeg"} and dec["mse"]["images"] == 2
    assert dec["mse"]["fid"] is not None and dec["jpeg"]["kid"] is not None
    assert summary["fid_weights"].startswith("random")
    rows = json.loads((tmp_path / "per_image.json").read_text())
    for r in (r for r in rows if r["decoder"] == "mse"):
        # Real bpp comes from the bytes (header included); the estimate is beside it.
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (r["height"] * r["width"]))
        assert r["bpp_est"] > 0 and 0 <= r["ms_ssim"] <= 1
        jpeg = next(x for x in rows if x["image"] == r["image"] and x["decoder"] == "jpeg")
        assert jpeg["bpp"] <= r["bpp"] or not jpeg["matched"]
    assert len((tmp_path / "per_image.csv").read_text().splitlines()) == 1 + 2 * 2
    assert len(list((tmp_path / "reconstructions" / "mse").glob("*.png"))) == 2
    # The saved bitstreams are the bytes the real bpp was measured on.
    for r in (r for r in rows if r["decoder"] == "mse"):
        assert (tmp_path / "bitstreams" / f"{r['image']}.hfd").stat().st_size == r["bytes"]


def test_rerun_after_interruption_does_not_redo_finished_images(tmp_path, codec):
    config = _config("tiny")
    first = Interruptible(codec, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(config, out=tmp_path, codec=first)
    assert len(runner.read_log(tmp_path / "per_image.jsonl")) == 2 * 2  # 2 images x 2 rows
    with open(tmp_path / "per_image.jsonl", "a") as f:
        f.write('{"image": "synthetic_02", "deco')  # a write torn by the interruption
    second = Interruptible(codec)
    summary = runner.run(config, out=tmp_path, codec=second)
    assert second.compressed == [(96, 96, 3)]  # only the third image was compressed again
    assert summary["decoders"]["mse"]["images"] == 3
    third = Interruptible(codec)
    runner.run(config, out=tmp_path, codec=third)
    assert third.compressed == []


def test_resume_refuses_another_model_or_other_settings(tmp_path, codec):
    config = _config("tiny", max_images=1)
    runner.run(config, out=tmp_path, codec=codec)
    # Another model: the same autoencoder (same bitstreams) plus a diffusion decoder.
    other = Codec(codec.config, codec.autoencoder, diffusion=UNet(codec.config.diffusion.unet,
                                                                 rngs=nnx.Rngs(0)))  # fmt: skip
    with pytest.raises(runner.EvalError, match="another model"):
        runner.run(config, out=tmp_path, codec=other)
    with pytest.raises(runner.EvalError, match=r"another eval settings \(baselines\)"):
        runner.run(_config("tiny", max_images=1, baselines=("webp",)), out=tmp_path, codec=codec)
    assert len(runner.read_log(tmp_path / "per_image.jsonl")) == 2  # nothing was mixed in
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "run.json").write_text('{"model": ')
    with pytest.raises(runner.EvalError, match="not valid JSON"):
        runner.run(config, out=torn, codec=codec)
    # Settings that change no per-image number may differ: a larger max_images extends the run.
    summary = runner.run(_config("tiny", max_images=2), out=tmp_path, codec=Interruptible(codec))
    assert summary["decoders"]["mse"]["images"] == 2


def test_demo_runs_the_bundled_model_on_offline_photos(tmp_path, monkeypatch):
    """The quick start's job: no --bundle, so the shipped default model; every
    decoder; FID skipped (no Inception weights offline)."""
    monkeypatch.delenv("HFD_DEFAULT_BUNDLE", raising=False)
    config = _config("demo", max_images=1, decoders=("mse", "diffusion", "flow"))
    config.eval.save_reconstructions = True
    # 2 sampling steps instead of the model's 16: full-size CPU decodes take a minute each.
    config.eval.diffusion_steps = config.eval.flow_steps = 2
    with pytest.warns(UserWarning, match="FID/KID skipped"):
        summary = runner.run(config, out=tmp_path / "out")
    _written(tmp_path / "out")
    assert summary["dataset"] == "demo" and summary["images"] == 1
    assert set(summary["decoders"]) == {"mse", "diffusion", "flow", "jpeg"}
    assert summary["decoders"]["mse"]["fid"] is None and "skipped" in summary["fid_note"]
    for dec in ("mse", "diffusion", "flow", "jpeg"):
        assert len(list((tmp_path / "out" / "reconstructions" / dec).glob("*.png"))) == 1
    assert len(list((tmp_path / "out" / "bitstreams").glob("*.hfd"))) == 1


def test_eval_reads_a_tfds_array_record_build(tmp_path, codec):
    ar = pytest.importorskip("array_record.python.array_record_module")
    import io

    import numpy as np
    from PIL import Image

    from hific_diffusion.data.tfds_records import encode_example

    rng = np.random.default_rng(0)
    imgs = [(rng.random((64, 80, 3)) * 255).astype(np.uint8) for _ in range(2)]
    folder = tmp_path / "tfds" / "clic" / "1.0.0"
    folder.mkdir(parents=True)
    writer = ar.ArrayRecordWriter(str(folder / "clic-test.array_record-00000-of-00001"), "")
    for img in imgs:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        writer.write(encode_example({"image": buf.getvalue()}))
    writer.close()
    config = _config("clic20", tfds_name="clic", tfds_split="test", save_reconstructions=True)
    summary = runner.run(config, out=tmp_path / "out", data_dir=str(tmp_path / "tfds"), codec=codec)
    assert summary["images"] == 2
    rows = json.loads((tmp_path / "out" / "per_image.json").read_text())
    assert {r["image"] for r in rows} == {"clic_test_00000", "clic_test_00001"}
    assert all((r["height"], r["width"]) == (64, 80) for r in rows)
    with pytest.raises(runner.datasets.DatasetError, match="tfds build clic"):
        runner.run(config, out=tmp_path / "o2", data_dir=str(tmp_path / "empty"), codec=codec)


def test_missing_dataset_says_how_to_get_it(tmp_path, codec):
    config = _config("kodak")
    with pytest.raises(runner.datasets.DatasetError, match="r0k.us"):
        runner.run(config, out=tmp_path, data_dir=str(tmp_path / "nope"), codec=codec)


def test_unknown_decoder_is_a_clear_error(tmp_path, codec):
    config = _config("tiny")
    config.eval.decoders = ("flow",)
    with pytest.raises(runner.EvalError, match="flow"):
        runner.run(config, out=tmp_path, codec=codec)


@pytest.mark.parametrize(
    "args,match",
    [
        (["--config=kodak"], "no --data_dir given"),  # missing dataset says how to get it
        (["--config=tiny"], "not valid JSON"),  # a torn run.json in --out
    ],
)
def test_eval_command_reports_bad_input_as_one_error_line_and_exit_2(args, match, tmp_path):
    import subprocess
    import sys

    (tmp_path / "run.json").write_text('{"model": ')
    proc = subprocess.run(
        [sys.executable, "-m", "hific_diffusion.eval", *args, f"--out={tmp_path}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], proc.stderr


def test_decoders_with_side_information_report_the_bpp_of_their_own_files(tmp_path):
    """corrdiff and hfdplus decode files that carry their side information:
    their rows' bytes and real bpp include it; mse's file has none."""
    config = _config("tiny", max_images=1, decoders=("mse", "corrdiff", "hfdplus"))
    config.eval.diffusion_steps = 2
    config.eval.save_reconstructions = True
    codec = runner.random_codec(config)
    assert codec.decoders == ("mse", "diffusion", "corrdiff", "hfdplus")
    runner.run(config, out=tmp_path, codec=codec)
    rows = {r["decoder"]: r for r in json.loads((tmp_path / "per_image.json").read_text())}
    assert rows["corrdiff"]["bytes"] == rows["mse"]["bytes"] + 4 + 2 * 2  # 2 float16 factors
    assert rows["hfdplus"]["bytes"] > rows["mse"]["bytes"] + 4
    for dec in ("mse", "corrdiff", "hfdplus"):
        r = rows[dec]
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (r["height"] * r["width"]))
        sub = "" if dec == "mse" else dec
        assert (tmp_path / "bitstreams" / sub / f"{r['image']}.hfd").stat().st_size == r["bytes"]


def test_hific_decoder_is_evaluated_on_the_mse_decoders_file(tmp_path):
    """``eval.decoders`` with hific: it decodes the plain file (no side
    information: the same bytes and bpp as mse), ignores the noise level,
    and its reconstructions are its own."""
    config = _config("tiny", max_images=1, decoders=("mse", "hific"))
    config.eval.noise_level = 0.5  # a sampler setting: not passed to hific
    config.eval.save_reconstructions = True
    codec = runner.random_codec(config)
    assert codec.decoders == ("mse", "hific")
    runner.run(config, out=tmp_path, codec=codec)
    rows = {r["decoder"]: r for r in json.loads((tmp_path / "per_image.json").read_text())}
    assert rows["hific"]["bytes"] == rows["mse"]["bytes"]
    assert rows["hific"]["bpp"] == rows["mse"]["bpp"]
    name = rows["hific"]["image"]
    assert (tmp_path / "reconstructions" / "hific" / f"{name}.png").is_file()
