"""Classical baselines hit the target bitrate by searching their quality setting."""

import numpy as np
import pytest
from skimage import data

from hific_diffusion import metrics
from hific_diffusion.evaluation import baselines


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(data.astronaut()[:128, :160])


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "jpegxl"])
def test_baseline_matches_target_bpp_from_below(photo, name):
    ok, missing = baselines.available([name])
    if not ok:
        pytest.skip(f"{name}: needs {missing[name]}")
    target = 1.0
    r = baselines.at_bpp(name, photo, target)
    assert r.matched and r.bpp <= target
    assert r.image.shape == photo.shape and r.image.dtype == np.uint8
    assert metrics.psnr(photo, r.image) > 20
    # The next setting up would overshoot: the search found the highest quality that fits.
    if r.quality < baselines.BASELINES[name].qualities[1]:
        nxt = baselines.BASELINES[name].encode(photo, r.quality + 1)
        assert len(nxt) * 8 / (128 * 160) > target


def test_unreachable_low_target_reports_unmatched(photo):
    r = baselines.at_bpp("jpeg", photo, 0.001)
    assert not r.matched and r.quality == baselines.BASELINES["jpeg"].qualities[0]


def test_missing_external_encoders_are_reported_not_run(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    ok, missing = baselines.available(["jpeg", "bpg", "vvc"])
    assert ok == ["jpeg"] and set(missing) == {"bpg", "vvc"} and "bpgenc" in missing["bpg"]
    with pytest.raises(baselines.BaselineError, match="unavailable"):
        baselines.at_bpp("bpg", np.zeros((8, 8, 3), np.uint8), 1.0)
    with pytest.raises(baselines.BaselineError, match="unknown"):
        baselines.available(["png"])


def test_yuv420_round_trip_is_close():
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), 2, 0), 2, 1)[:9]
    raw, ph, pw = baselines._to_yuv420(img)
    back = baselines._from_yuv420(raw, 9, 12, ph, pw)
    assert back.shape == img.shape and np.abs(back.astype(int) - img).max() <= 3
