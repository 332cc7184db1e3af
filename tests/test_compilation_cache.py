"""The persistent compilation cache of the CLI (hific_diffusion.cache): a second
process reuses compiled executables, and no cache state can change an output bit."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "tests" / "fixtures" / "golden_coding" / "bundle"


def _cli(tmp, cache, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", HFD_COMPILATION_CACHE=str(cache))
    proc = subprocess.run(
        [sys.executable, "-m", "hific_diffusion.cli", *map(str, args), "--model", str(BUNDLE)],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def _round_trip(tmp, cache, tag):
    hfd, png = tmp / f"{tag}.hfd", tmp / f"{tag}.png"
    _cli(tmp, cache, "compress", tmp / "in.png", hfd)
    _cli(tmp, cache, "decompress", hfd, png)
    return hfd.read_bytes(), np.asarray(Image.open(png))


def test_cached_and_corrupted_cache_runs_give_identical_bytes_and_images(tmp_path):
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(128, 40, (70, 90, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(x).save(tmp_path / "in.png")
    cache = tmp_path / "cache"
    first = _round_trip(tmp_path, cache, "first")
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries, "the first run wrote no compiled executables"
    second = _round_trip(tmp_path, cache, "second")  # served from the cache
    for p in entries:  # every entry torn: JAX must recompile, not misbehave
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2] + bytes(255 - b for b in data[len(data) // 2 :]))
    third = _round_trip(tmp_path, cache, "third")
    off = tmp_path / "off"
    fourth = _round_trip(tmp_path, "off", "fourth")  # cache disabled
    assert not off.exists()
    for other in (second, third, fourth):
        assert other[0] == first[0]
        np.testing.assert_array_equal(other[1], first[1])
