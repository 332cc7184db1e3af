"""Writes colab/demo.ipynb and colab/train_small.ipynb.

The notebooks are generated so their source stays reviewable as code; after
editing this file run ``python colab/make_notebooks.py`` and commit both.
tests/test_notebooks.py executes them headless (nbclient) against the
bundled model and checks that they are what this script writes.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def md(s):
    return nbf.v4.new_markdown_cell(s.strip())


def code(s):
    return nbf.v4.new_code_cell(s.strip())


INSTALL = """
# In Colab, install the project first (skipped when it is already importable).
# Set HFD_REPO to a pip-installable location of this repository: a git URL
# ("git+https://...") or an uploaded checkout ("-e /content/hific_diffusion").
import importlib.util
import os
import shlex
import subprocess
import sys

if importlib.util.find_spec("hific_diffusion") is None:
    repo = os.environ.get("HFD_REPO")
    if not repo:
        raise RuntimeError("hific_diffusion is not installed: set HFD_REPO (see above)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *shlex.split(repo)], check=True)
"""


def demo():
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# hific_diffusion: compress your own image

HFD (arXiv 2305.18231): an MSE autoencoder decides the bits; a diffusion model
or a rectified flow adds detail at decode time, from the same bytes.
This notebook compresses an image to a real `.hfd` file with the bundled
model (see `MODEL_CARD.md`), decodes it with each decoder side by side, and
varies the number of sampling steps.
"""),
        code(INSTALL),
        code("""
import os

import matplotlib.pyplot as plt

from hific_diffusion import images
from hific_diffusion.metrics.psnr import psnr
from hific_diffusion.pipeline import Codec

# HFD_MODEL: a bundle directory or a training workdir; unset: the bundled model.
codec = Codec.load(os.environ.get("HFD_MODEL") or None)
print("decoders:", codec.decoders)
"""),
        md("""
Pick an image: set `IMAGE` to a path of your own (in Colab, upload it first),
or keep scikit-learn's `china.jpg`, one of the photos held out from the
bundled model's training.
"""),
        code("""
IMAGE = os.environ.get("HFD_IMAGE", "")
if IMAGE:
    x = images.load(IMAGE)
else:
    from sklearn.datasets import load_sample_image

    x = load_sample_image("china.jpg")[::3, ::3]  # 143x214
# CorrDiff's factors (16 bits a sampler step) are side information the
# encoder computes by running the diffusion sampler: write them if the model
# can, so every decoder below can read this one file.
side = [d for d in ("corrdiff",) if d in codec.decoders]
data = codec.compress(x, decoders=side)
h, w = x.shape[:2]
bpp = len(data) * 8 / (h * w)
print(f"{w}x{h}: {len(data)} bytes = {bpp:.3f} bpp (estimate {codec.estimate_bpp(x):.3f})")
with open("image.hfd", "wb") as f:  # a real file: `hific-diffusion info image.hfd`
    f.write(data)
"""),
        code("""
# hfdplus needs its own side information (compress(..., decoders=["hfdplus"])).
recons = {d: codec.decompress(data, decoder=d) for d in codec.decoders if d != "hfdplus"}
fig, axes = plt.subplots(1, 1 + len(recons), figsize=(4 * (1 + len(recons)), 4))
axes[0].imshow(x)
axes[0].set_title("original")
for ax, (d, y) in zip(axes[1:], recons.items(), strict=True):
    ax.imshow(y)
    ax.set_title(f"{d}: PSNR {psnr(x, y):.2f} dB")
for ax in axes:
    ax.axis("off")
plt.show()
"""),
        md("More sampling steps cost decode time; the bits do not change."),
        code("""
generative = [d for d in recons if d not in ("mse", "corrdiff")]  # corrdiff: the file's steps
steps = [2, 8, 32]
for d in generative:
    fig, axes = plt.subplots(1, len(steps), figsize=(4 * len(steps), 4))
    for ax, n in zip(axes, steps, strict=True):
        ax.imshow(codec.decompress(data, decoder=d, steps=n))
        ax.set_title(f"{d}, {n} steps")
        ax.axis("off")
    plt.show()
if not generative:
    print("this model has no generative decoder")
"""),
    ]
    return nb


def train_small():
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# Train the tiny config and look at samples

Runs the project's own trainer (`python -m hific_diffusion.train`) on the
`tiny` config: stage 1 (the autoencoder), then stage 2 (a diffusion decoder)
on its frozen reconstructions, a minute or two each on a CPU. Real models
train for days on accelerators with `configs/elic_mse.py` and `configs/hfd.py`.
"""),
        code(INSTALL),
        code("""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORK = Path(os.environ.get("HFD_WORKDIR") or tempfile.mkdtemp(prefix="hfd_tiny_"))
STEPS = int(os.environ.get("HFD_STEPS", "20"))


def train(name, workdir, *overrides):
    cmd = [
        sys.executable,
        "-m",
        "hific_diffusion.train",
        f"--config={name}",
        f"--workdir={workdir}",
        f"--config.train.steps={STEPS}",
        *overrides,
    ]
    subprocess.run(cmd, check=True)


train("tiny:autoencoder", WORK / "ae")
train("tiny:diffusion", WORK / "diffusion", f"--config.train.autoencoder_checkpoint={WORK / 'ae'}")
"""),
        code("""
for run in ("ae", "diffusion"):
    rows = [
        json.loads(line)
        for log in sorted((WORK / run).glob("**/*.jsonl"))
        for line in log.read_text().splitlines()
        if line.strip()
    ]
    losses = [round(r["loss"], 4) for r in rows if "loss" in r]
    print(run, "losses:", losses)
"""),
        code("""
import matplotlib.pyplot as plt
import skimage.data

from hific_diffusion.pipeline import Codec

codec = Codec.load(WORK / "diffusion")
x = skimage.data.chelsea()[:64, :96]
data = codec.compress(x)
shown = {
    f"original ({len(data) * 8 / x[..., 0].size:.2f} bpp)": x,
    "mse": codec.decompress(data, decoder="mse"),
    "diffusion sample": codec.decompress(data, decoder="diffusion", seed=1),
}
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, (title, img) in zip(axes, shown.items(), strict=True):
    ax.imshow(img)
    ax.set_title(title)
    ax.axis("off")
plt.show()
"""),
    ]
    return nb


def notebooks():
    out = {"demo.ipynb": demo(), "train_small.ipynb": train_small()}
    for nb in out.values():
        nb.metadata["kernelspec"] = KERNEL
        nb.metadata["language_info"] = {"name": "python"}
    return out


def main():
    for name, nb in notebooks().items():
        nbf.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
