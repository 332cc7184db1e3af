"""Atomic outputs: a failed or killed write never leaves a partial file under the final name."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_diffusion import atomic, images
from hific_diffusion.images import ImageError

ROOT = Path(__file__).resolve().parent.parent


def test_failure_mid_write_keeps_the_previous_file_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.hfd"
    target.write_bytes(b"previous good file")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic.atomic_write(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.hfd"]


def test_a_complete_write_replaces_the_file_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o640)
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    atomic.write_bytes(tmp_path / "fresh.bin", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "fresh.bin").stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "out.txt"]


def test_a_process_killed_mid_write_leaves_the_previous_file_under_the_final_name(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous good image")
    child = textwrap.dedent(f"""
        import os, signal
        from hific_diffusion import atomic
        with atomic.atomic_write({str(target)!r}) as f:
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", child], env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous good image"
    # The only trace of the killed write is a hidden temporary file beside it.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.png"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.png.")
    assert leftovers[0].endswith(".tmp")


def test_image_save_failing_mid_write_keeps_the_previous_image(tmp_path, monkeypatch):
    target = tmp_path / "y.png"
    images.save(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="No space left"):
        images.save(target, np.full((4, 4, 3), 255, np.uint8))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["y.png"]


def test_check_writable_refuses_what_cannot_be_written(tmp_path):
    atomic.check_writable(tmp_path / "ok.hfd")  # creates nothing
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "missing" / "o.hfd", tmp_path / "file" / "o.hfd", tmp_path):
        with pytest.raises(OSError) as e:
            atomic.check_writable(bad)
        assert e.value.filename == str(bad)
