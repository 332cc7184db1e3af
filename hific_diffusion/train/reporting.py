"""Metrics out of the trainer without TensorFlow.

Every log step writes one JSON line to ``workdir/metrics.jsonl``, scalars to
TensorBoard event files in ``workdir/tensorboard`` (tensorboardX), and one
console line (loss, bpp, PSNR, steps/s, images/s, ETA). Only process 0
writes. Sample images go to ``workdir/samples/step_<N>.png``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CONSOLE_KEYS = ("loss", "bpp", "psnr", "mse")


class Reporter:
    def __init__(self, workdir, total_steps: int, global_batch: int, enabled: bool = True):
        self.dir = Path(workdir)
        self.total, self.batch, self.enabled = total_steps, global_batch, enabled
        self._tb = None
        self._last = None  # (step, time)
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tensorboard"))

    def start(self, step: int) -> None:
        self._last = (step, time.perf_counter())

    def write(self, step: int, metrics: dict) -> dict:
        """Log ``metrics`` (host floats) at ``step``; adds rate and ETA fields."""
        now = time.perf_counter()
        out = {k: float(v) for k, v in metrics.items()}
        if self._last is not None and step > self._last[0]:
            steps_per_s = (step - self._last[0]) / max(now - self._last[1], 1e-9)
            out["steps_per_s"] = steps_per_s
            out["images_per_s"] = steps_per_s * self.batch
            out["eta_s"] = (self.total - step) / max(steps_per_s, 1e-9)
        self._last = (step, now)
        if not self.enabled:
            return out
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **out}) + "\n")
        for k, v in out.items():
            self._tb.add_scalar(f"train/{k}", v, step)
        self._tb.flush()
        parts = [f"step {step}/{self.total}"]
        parts += [f"{k} {out[k]:.4g}" for k in CONSOLE_KEYS if k in out]
        if "steps_per_s" in out:
            parts.append(f"{out['steps_per_s']:.2f} steps/s {out['images_per_s']:.1f} img/s")
            parts.append(f"ETA {_hms(out['eta_s'])}")
        print(" | ".join(parts), flush=True)
        return out

    def note(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def images(self, step: int, rows: list[np.ndarray]) -> Path | None:
        """Write each row (list of uint8 HxWx3 images side by side) into one PNG."""
        if not self.enabled or not rows:
            return None
        grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
        path = self.dir / "samples" / f"step_{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(path)
        if self._tb is not None:
            self._tb.add_image("samples", grid, step, dataformats="HWC")
        return path

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
