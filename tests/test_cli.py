"""The hific-diffusion command line, run as a subprocess (as users run it)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_diffusion.coding import bitstream

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, **env_extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "hific_diffusion.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def assert_clean_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def _hfd(path, h=5, w=7):
    header = bitstream.Header(h, w, bitstream.short_fingerprint(b"m"), "flow", 9, 42)
    data = bitstream.pack(header, [b"abcd", b"efgh0000"])
    path.write_bytes(data)
    return data


def test_info_prints_header_fields_and_real_bpp(tmp_path):
    data = _hfd(tmp_path / "a.hfd")
    proc = run_cli("info", tmp_path / "a.hfd")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "7x5 pixels" in out and f"{len(data)} bytes" in out
    assert f"{len(data) * 8 / 35:.4f} bpp" in out
    assert "decoder=flow" in out and "steps=9" in out and "seed=42" in out


def test_info_accepts_directories_and_globs(tmp_path):
    for name in ("a", "b"):
        _hfd(tmp_path / f"{name}.hfd")
    for spec in (tmp_path, f"{tmp_path}/*.hfd"):
        proc = run_cli("info", spec)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("pixels") == 2


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "empty"),
        (b"\x89HFD\x01", "truncated"),
        (b"GIF89a" + bytes(40), "foreign"),
    ],
)
def test_bad_bitstreams_exit_2_with_one_line(tmp_path, content, fragment):
    (tmp_path / "bad.hfd").write_bytes(content)
    assert_clean_error(run_cli("info", tmp_path / "bad.hfd"), fragment)
    assert_clean_error(run_cli("decompress", tmp_path / "bad.hfd", tmp_path / "o.png"), fragment)


def test_corrupt_and_other_version_bitstreams_exit_2(tmp_path):
    data = bytearray(_hfd(tmp_path / "a.hfd"))
    data[-6] ^= 0xFF
    (tmp_path / "c.hfd").write_bytes(bytes(data))
    assert_clean_error(run_cli("info", tmp_path / "c.hfd"), "CRC32")
    data = bytearray(_hfd(tmp_path / "a.hfd"))
    data[4] = 9
    (tmp_path / "v.hfd").write_bytes(bytes(data))
    assert_clean_error(run_cli("info", tmp_path / "v.hfd"), "version 9")


def test_missing_inputs_exit_2_with_one_line(tmp_path):
    assert_clean_error(run_cli("info", tmp_path / "none.hfd"), "no such file")
    assert_clean_error(
        run_cli("compress", tmp_path / "none.png", tmp_path / "o.hfd"), "no such file"
    )
    assert_clean_error(run_cli("info", f"{tmp_path}/*.nothing"), "no files match")


def test_non_image_input_exits_2_with_one_line(tmp_path):
    (tmp_path / "x.png").write_text("this is text")
    assert_clean_error(
        run_cli("compress", tmp_path / "x.png", tmp_path / "o.hfd"), "cannot read image"
    )


def test_without_model_the_bundled_default_compresses_and_decodes(tmp_path):
    from sklearn.datasets import load_sample_image

    x = load_sample_image("flower.jpg")[100:164, 200:296]
    Image.fromarray(x).save(tmp_path / "x.png")
    env = {"HFD_DEFAULT_BUNDLE": ""}  # unset: the shipped bundle
    proc = run_cli("compress", tmp_path / "x.png", tmp_path / "o.hfd", **env)
    assert proc.returncode == 0, proc.stderr
    assert "bpp" in proc.stdout
    proc = run_cli(
        "decompress", tmp_path / "o.hfd", tmp_path / "y.png", "--decoder", "flow", "--steps", "2",
        **env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    y = np.asarray(Image.open(tmp_path / "y.png"))
    assert y.shape == x.shape and np.abs(y.astype(int) - x).mean() < 40


def test_without_a_default_model_says_pass_model(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    proc = run_cli(
        "compress", tmp_path / "x.png", tmp_path / "o.hfd", HFD_DEFAULT_BUNDLE=str(tmp_path / "nb")
    )
    assert_clean_error(proc, "no default model installed")


def test_missing_bundle_exits_2_with_one_line(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    proc = run_cli(
        "compress", "--model", tmp_path / "nobundle", tmp_path / "x.png", tmp_path / "o.hfd"
    )
    assert_clean_error(proc, "no model bundle")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    import jax
    from flax import nnx

    from hific_diffusion import bundle, configs
    from hific_diffusion.autoencoder.elic import ELIC
    from hific_diffusion.pipeline import Codec

    config = configs.load("tiny")
    root = tmp_path_factory.mktemp("bundles")
    model = ELIC(config.model, rngs=nnx.Rngs(0))
    other = nnx.clone(model)  # a second model without a second slow initialization
    nnx.update(other, jax.tree.map(lambda a: a * 1.01, nnx.state(other, nnx.Param)))
    codecs = {"a": Codec(config, model), "b": Codec(config, other)}
    for name, codec in codecs.items():
        bundle.save_codec(root / name, codec)
    return root, codecs


@pytest.mark.slow  # three fresh processes compile the tiny model: minutes on 2 busy cores
def test_directory_round_trip_decodes_bit_exactly_under_other_xla_settings(bundles, tmp_path):
    root, codecs = bundles
    src = tmp_path / "in"
    src.mkdir()
    shapes = {"one": (1, 1), "odd": (63, 65)}
    for name, (h, w) in shapes.items():
        rng = np.random.default_rng(h)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(src / f"{name}.png")
    proc = run_cli("compress", "--model", root / "a", src, tmp_path / "hfd")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "hfd").iterdir()) == ["odd.hfd", "one.hfd"]
    # A fresh process with one XLA thread and one device must decode the same pixels.
    proc = run_cli(
        "decompress",
        "--model",
        root / "a",
        tmp_path / "hfd",
        tmp_path / "out",
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false --xla_force_host_platform_device_count=1",
    )
    assert proc.returncode == 0, proc.stderr
    for name, shape in shapes.items():
        data = (tmp_path / "hfd" / f"{name}.hfd").read_bytes()
        assert data == codecs["a"].compress(src / f"{name}.png")
        decoded = np.asarray(Image.open(tmp_path / "out" / f"{name}.png"))
        assert decoded.shape == (*shape, 3)
        assert np.array_equal(decoded, codecs["a"].decompress(data))


def test_bitstream_from_another_bundle_exits_2(bundles, tmp_path):
    root, codecs = bundles
    (tmp_path / "a.hfd").write_bytes(codecs["a"].compress(np.zeros((9, 9, 3), np.uint8)))
    proc = run_cli("decompress", "--model", root / "b", tmp_path / "a.hfd", tmp_path / "o.png")
    assert_clean_error(proc, "different model")


# ------------------------------------------------------------------ issue 18
GOLDEN = ROOT / "tests" / "fixtures" / "golden_coding"


def test_model_directory_that_is_not_a_bundle_exits_2_with_one_line(tmp_path):
    import shutil

    (tmp_path / "e").mkdir()
    shutil.copytree(GOLDEN / "bundle", tmp_path / "b")
    (tmp_path / "b" / "manifest.json").unlink()
    for model in ("e", "b"):
        proc = run_cli(
            "decompress", GOLDEN / "photo.hfd", tmp_path / "o.png", "--model", tmp_path / model
        )
        assert_clean_error(proc, "is neither a model bundle (no manifest.json)")
        assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["compress", "IN.png", "o.hfd", "--steps", "70000"], "--steps must be in [0, 65535]"),
        (["compress", "IN.png", "o.hfd", "--steps", "-1"], "--steps must be in [0, 65535]"),
        (["decompress", "IN.hfd", "o.png", "--steps", "0"], "--steps must be >= 1"),
        (["decompress", "IN.hfd", "o.png", "--seed", "-1"], "--seed must be in"),
        (["decompress", "IN.hfd", "o.png", "--noise-level", "nan"], "--noise-level must be"),
        (["decompress", "IN.hfd", "o.png", "--tile", "-64"], "--tile must be >= 0"),
        (["compress", "IN.png", "nowhere/o.hfd"], "cannot write"),
        (["compress", "IN.png", "."], "cannot write"),
        (["decompress", "IN.hfd", "IN.png/o.png"], "cannot write"),
    ],
)
def test_bad_arguments_and_unwritable_outputs_fail_before_any_work(tmp_path, args, fragment):
    """--model names no bundle: an error about the arguments proves they came first."""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "IN.png")
    _hfd(tmp_path / "IN.hfd")
    args = [a.replace("IN", str(tmp_path / "IN")) for a in args]
    proc = run_cli(*args, "--model", tmp_path / "no_such_bundle", cwd=tmp_path)
    assert_clean_error(proc, fragment)


def _refused(proc, inputs: dict):
    assert_clean_error(proc, "is also an input; refusing to overwrite it")
    for path, data in inputs.items():
        assert path.read_bytes() == data


def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path):
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(tmp_path / "a.png")
    _hfd(tmp_path / "a.hfd")
    kept = {p: p.read_bytes() for p in (tmp_path / "a.png", tmp_path / "a.hfd")}
    model = ("--model", tmp_path / "no_such_bundle")
    _refused(run_cli("compress", tmp_path / "a.png", tmp_path / "a.png", *model), kept)
    _refused(run_cli("decompress", "a.hfd", "./a.hfd", *model, cwd=tmp_path), kept)
    (tmp_path / "link.hfd").symlink_to(tmp_path / "a.png")
    _refused(run_cli("compress", tmp_path / "a.png", tmp_path / "link.hfd", *model), kept)
    # Globs are not filtered by extension: a.png -> ./a.hfd, a.hfd -> ./a.png.
    _refused(run_cli("compress", f"{tmp_path}/a.*", tmp_path, *model), kept)
    _refused(run_cli("decompress", f"{tmp_path}/a.*", tmp_path, *model), kept)


def test_two_inputs_that_would_write_one_output_are_refused(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("x.png", "x.jpg"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / name)
    proc = run_cli("compress", src, tmp_path / "out", "--model", tmp_path / "no_such_bundle")
    assert_clean_error(proc, "would both write")


def test_an_animated_gif_warns_on_one_line(tmp_path):
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    proc = run_cli("compress", tmp_path / "a.gif", tmp_path / "o.hfd", "--model", tmp_path / "nb")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("error: no model bundle"), proc.stderr
    assert lines[0].startswith("warning: ") and "using the first" in lines[0]


def test_decoder_hific_on_a_bundle_without_it_exits_2(bundles, tmp_path):
    """A file made by a model without the GAN decoder, decoded with
    ``--decoder hific``: one line naming the decoders it has, exit 2."""
    root, codecs = bundles
    (tmp_path / "a.hfd").write_bytes(codecs["a"].compress(np.zeros((9, 9, 3), np.uint8)))
    proc = run_cli(
        "decompress",
        "--model",
        root / "a",
        "--decoder",
        "hific",
        tmp_path / "a.hfd",
        tmp_path / "o.png",
    )
    assert_clean_error(proc, "this model has no hific decoder (available: mse)")
    assert not (tmp_path / "o.png").exists()
