"""The U-Net benchmark runs end to end on CPU with tiny settings and writes JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_unet_bench_tiny_writes_every_measurement(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "unet_bench.py"), "--config=tiny", "--steps=2",
           "--train-batch=2", "--sample-batch=2", "--iters=1", "--memory-sizes=64",
           f"--out={out}"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    tiny = report["configs"]["tiny"]
    assert tiny["params"] > 0 and tiny["forward_gflop_per_image"] > 0
    for part in ("train", "sample"):
        assert tiny[part]["images_per_s"] > 0 and tiny[part]["tflops"] > 0
    assert tiny["decode"]["decode_s"] > 0 and tiny["decode"]["steps"] == 2
    assert (tiny["decode"]["height"], tiny["decode"]["width"]) == (256, 168)
    assert tiny["memory"][0]["side"] == 64 and "error" not in tiny["memory"][0]


def test_flop_count_matches_the_peer_figure_for_the_diffusers_shape():
    """peer_gpu_figures.md: 497.5 GFLOP per 256x256 forward of the diffusers U-Net."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.diffusion import flops, unet

    cfg = configs.load("diffusers_equiv").diffusion.unet
    graphdef, state = nnx.split(nnx.eval_shape(lambda: unet.UNet(cfg, rngs=nnx.Rngs(0))))
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    n = flops.count_flops(lambda s, x: nnx.merge(graphdef, s)(x, x, 0.0), state, x)
    assert abs(n / 497.5e9 - 1) < 0.01, n
