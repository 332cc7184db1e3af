"""The Colab notebooks run headless (nbclient) against the bundled model and
are exactly what ``colab/make_notebooks.py`` generates."""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

COLAB = Path(__file__).resolve().parents[1] / "colab"


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", COLAB / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sources(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.parametrize("name", ["demo.ipynb", "train_small.ipynb"])
def test_committed_notebooks_match_their_generator(name):
    committed = nbformat.read(COLAB / name, as_version=4)
    assert _sources(committed) == _sources(_generator().notebooks()[name])


def _execute(name, tmp_path, monkeypatch, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # The kernel's default (inline) matplotlib backend puts figures in the outputs.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # A user's kernel: one CPU device, not the suite's 8 simulated ones.
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    # The kernel runs this interpreter (the project's venv).
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    nb = nbformat.read(COLAB / name, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


def _text(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", ""))
    return "".join(out)


def _images(nb):
    return sum(
        1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    )


def test_demo_notebook_runs_on_the_bundled_model(tmp_path, monkeypatch):
    monkeypatch.delenv("HFD_MODEL", raising=False)
    monkeypatch.delenv("HFD_IMAGE", raising=False)
    nb = _execute("demo.ipynb", tmp_path, monkeypatch)
    text = _text(nb)
    from hific_diffusion.pipeline import Codec, real_bpp

    assert all(d in text for d in Codec.load().decoders)  # what the user can decode with
    data = (tmp_path / "image.hfd").read_bytes()
    # The size and rate it prints are those of the file it wrote (143x214 china.jpg).
    assert str(len(data)) in text and f"{real_bpp(data, 143, 214):.3f}" in text
    # side-by-side figure + one steps figure per generative decoder
    assert _images(nb) == 3


def test_train_small_notebook_trains_and_samples(tmp_path, monkeypatch):
    nb = _execute(
        "train_small.ipynb", tmp_path, monkeypatch, HFD_WORKDIR=str(tmp_path / "w"), HFD_STEPS="4"
    )
    for run in ("ae", "diffusion"):  # both stages trained the 4 steps, finite losses
        rows = [json.loads(ln) for ln in (tmp_path / "w" / run / "metrics.jsonl").open()]
        losses = [r["loss"] for r in rows if "loss" in r]
        assert rows[-1]["step"] == 4 and losses and all(map(math.isfinite, losses))
    assert _images(nb) == 1
