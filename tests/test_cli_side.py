"""The command line's side information: compress --for, decompress --decoder
corrdiff / --gamma-scale, info's listing, and one-line errors (subprocess)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_diffusion.coding import bitstream, sideinfo

ROOT = Path(__file__).resolve().parent.parent
ENV = {"HFD_DEFAULT_BUNDLE": ""}  # the shipped default bundle


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **ENV)
    return subprocess.run([sys.executable, "-m", "hific_diffusion.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def assert_clean_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from sklearn.datasets import load_sample_image

    d = tmp_path_factory.mktemp("cli_side")
    Image.fromarray(load_sample_image("china.jpg")[150:214, 250:346]).save(d / "x.png")
    return d / "x.png"


@pytest.fixture(scope="module")
def corr_file(photo):
    out = photo.with_name("c.hfd")
    proc = run_cli("compress", photo, out, "--for", "corrdiff", "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    return out


def test_compress_for_corrdiff_then_decode_with_it_and_list_it(corr_file, tmp_path):
    header, _ = bitstream.unpack(corr_file.read_bytes())
    assert header.side_info("corrdiff") is not None and header.steps == 3
    proc = run_cli("info", corr_file)
    assert proc.returncode == 0 and "side information: corrdiff v1 6 bytes" in proc.stdout
    outs = {}
    for scale in ("0", "1"):
        proc = run_cli("decompress", corr_file, tmp_path / f"{scale}.png", "--decoder",
                       "corrdiff", "--gamma-scale", scale)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outs[scale] = np.asarray(Image.open(tmp_path / f"{scale}.png"))
    proc = run_cli("decompress", corr_file, tmp_path / "d.png", "--decoder", "diffusion")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(outs["0"], np.asarray(Image.open(tmp_path / "d.png")))
    assert outs["1"].shape == (64, 96, 3) and not np.array_equal(outs["1"], outs["0"])


def test_info_says_none_without_side_information(tmp_path):
    h = bitstream.Header(5, 7, bitstream.short_fingerprint(b"m"))
    (tmp_path / "a.hfd").write_bytes(bitstream.pack(h, [b"ab"]))
    side = sideinfo.pack_energy(np.zeros((1, 1, 3), int), 16, 8)
    h2 = bitstream.Header(5, 7, bitstream.short_fingerprint(b"m"), side=(side,))
    (tmp_path / "b.hfd").write_bytes(bitstream.pack(h2, [b"ab"]))
    proc = run_cli("info", tmp_path)
    assert "side information: none" in proc.stdout
    assert f"side information: hfdplus v1 {len(side.payload)} bytes" in proc.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--for", "gan"], "--for: unknown decoder 'gan'"),
        (["--for", ","], "--for needs decoder names"),
        (["--for", "hfdplus"], "this model has no hfdplus decoder"),
    ],
)
def test_bad_for_exits_2_with_one_line_and_writes_nothing(photo, tmp_path, args, fragment):
    proc = run_cli("compress", photo, tmp_path / "o.hfd", *args)
    assert_clean_error(proc, fragment)
    assert not (tmp_path / "o.hfd").exists()


def test_decoding_without_the_needed_side_information_exits_2(photo, tmp_path):
    proc = run_cli("compress", photo, tmp_path / "o.hfd")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("decompress", tmp_path / "o.hfd", tmp_path / "o.png", "--decoder", "corrdiff")
    assert_clean_error(proc, "no corrdiff side information")


def test_bad_gamma_scale_and_corrupt_side_information_exit_2(corr_file, tmp_path):
    proc = run_cli("decompress", corr_file, tmp_path / "o.png", "--gamma-scale", "2")
    assert_clean_error(proc, "--gamma-scale must be in [0.0, 1.0]")
    proc = run_cli("decompress", corr_file, tmp_path / "o.png", "--decoder", "flow",
                   "--gamma-scale", "0.5")  # fmt: skip
    assert_clean_error(proc, "--gamma-scale applies to --decoder corrdiff only")
    data = bytearray(corr_file.read_bytes())
    data[-6] ^= 0xFF  # a byte of the factors: the CRC no longer matches
    (tmp_path / "bad.hfd").write_bytes(bytes(data))
    proc = run_cli("decompress", tmp_path / "bad.hfd", tmp_path / "o.png", "--decoder", "corrdiff")
    assert_clean_error(proc, "CRC32")
