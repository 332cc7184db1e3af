"""The shipped default bundle reproduces its model card on the held-out photos,
and its generative decoders add the detail the bits did not pay for."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hific_diffusion.data import offline_photos
from hific_diffusion.metrics.psnr import psnr
from hific_diffusion.metrics.texture import highpass_energy
from hific_diffusion.pipeline import DEFAULT_BUNDLE, Codec

# The first bundled default (configs/demo.py, 2026-11-23): the files in
# tests/fixtures/{previous_version,format_v1} were written with it.
DEMO_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "demo_bundle"

CARD = DEFAULT_BUNDLE / "model_card.json"


def _generative(card) -> list[str]:
    """The sampling decoders the card describes (the demo card: diffusion and flow)."""
    if isinstance(card["training"], dict):  # the first demo model's card
        return ["diffusion", "flow"]
    return [d for d in card["decoders"] if d in ("diffusion", "flow", "hfdplus")]


GEN = _generative(json.loads(CARD.read_text()))  # parametrizes the decoder tests


@pytest.fixture(scope="module")
def card():
    return json.loads(CARD.read_text())


def test_model_card_markdown_is_generated_from_the_shipped_card(card):
    """MODEL_CARD.md is the card writer's rendering of model_card.json (the photo
    model's, scripts/write_model_card.py; the first demo model's, with one run per
    task, scripts/write_demo_card.py): no hand edits, and its LPIPS sentence
    states what the figures say."""
    root = Path(__file__).resolve().parents[1]
    demo = isinstance(card["training"], dict)
    script = "write_demo_card.py" if demo else "write_model_card.py"
    spec = importlib.util.spec_from_file_location("wmc", root / "scripts" / script)
    wmc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wmc)
    text = wmc.markdown(card)
    assert text == (root / "MODEL_CARD.md").read_text()
    means = card["heldout_mean"]
    for dec in ("diffusion", "flow", "hific"):
        if dec not in means:
            continue
        verdict = "better than" if means[dec]["lpips"] < means["mse"]["lpips"] else "worse than"
        assert f"{dec} {means[dec]['lpips']:.3f} ({verdict} x_mse's" in text


@pytest.fixture(scope="module")
def codec():
    return Codec.from_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="module")
def coded(codec):
    photos = dict(zip(offline_photos.names("heldout"), offline_photos.load("heldout"), strict=True))
    return {name: (x, codec.compress(x)) for name, x in photos.items()}


def _card_row(card, image, decoder):
    rows = [r for r in card["heldout"] if r["image"] == image and r["decoder"] == decoder]
    assert len(rows) == 1, f"model card has no {decoder} row for {image}"
    return rows[0]


def test_bundle_is_small_enough_to_ship(card):
    size = sum(f.stat().st_size for f in DEFAULT_BUNDLE.rglob("*") if f.is_file())
    assert size <= 25e6
    assert (
        card["bundle_fingerprint"]
        == json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())["fingerprint"]
    )


def test_bundle_has_the_cards_decoders_and_corrdiff_on_the_diffusion_one(card, codec):
    gen = _generative(card)
    assert "diffusion" in gen
    want = ("mse", *[d for d in ("diffusion", "flow", "hfdplus") if d in gen], "corrdiff")
    assert set(codec.decoders) >= set(want)
    assert codec.decoders[0] == "mse"


def test_heldout_bpp_and_mse_psnr_match_the_model_card(card, codec, coded):
    # The photo model's card holds the offline held-out photos' rows apart
    # (its main figures are on the corpus' held-out photos).
    rows = card.get("offline_heldout", card["heldout"])
    for name, (x, data) in coded.items():
        row = _card_row({"heldout": rows}, name, "mse")
        h, w = x.shape[:2]
        assert (row["height"], row["width"]) == (h, w)
        # The integer entropy path makes the bytes platform-independent; allow a
        # few bytes for a float rounding flip in g_a on another CPU.
        assert abs(len(data) - row["bytes"]) <= max(8, 0.002 * row["bytes"])
        y = codec.decompress(data, decoder="mse")
        assert abs(psnr(x, y) - row["psnr"]) < 0.05


@pytest.fixture(scope="module")
def crops(codec):
    """128x192 centre crops of the held-out photos (full-size generative decodes
    take minutes on a CPU), each compressed and decoded with every decoder."""
    out = []
    for x in offline_photos.load("heldout"):
        h, w = x.shape[:2]
        c = x[(h - 128) // 2 : (h + 128) // 2, (w - 192) // 2 : (w + 192) // 2]
        data = codec.compress(c)
        decoders = ("mse", *GEN)  # corrdiff: tests/test_pipeline_side.py
        out.append((c, {d: codec.decompress(data, decoder=d, seed=0) for d in decoders}))
    return out


@pytest.mark.parametrize("decoder", GEN)
def test_generative_decoders_add_high_frequency_detail(crops, decoder):
    """Statistic: mean squared Laplacian of the luma, averaged over the crops.
    x_mse is blurred by the low rate; the generative decoders restore texture."""
    gains = [highpass_energy(d[decoder]) / highpass_energy(d["mse"]) for _, d in crops]
    assert np.mean(gains) > 1.2, gains


@pytest.mark.parametrize("decoder", GEN)
def test_generative_detail_is_bounded_by_the_original_not_noise(crops, decoder):
    """The opposing bounds: noise would also raise the statistic above, so the
    added energy must stay below the original's (x 1.5) on every crop, and the
    PSNR at most 3 dB below x_mse's (the bound for a perfect sampler)."""
    for x, d in crops:
        assert highpass_energy(d[decoder]) < 1.5 * highpass_energy(x)
        assert psnr(x, d[decoder]) > psnr(x, d["mse"]) - 3.0


@pytest.mark.parametrize("decoder", GEN)
def test_generative_decoders_lower_lpips_against_x_mse(card, crops, decoder):
    """Texture added *and* LPIPS (AlexNet) lowered: detail that is noise would
    raise it. The first demo model's decoders did not (its card says so);
    every photo model's must, on the offline held-out crops."""
    if isinstance(card["training"], dict):
        pytest.skip("the first demo model: its decoders raise LPIPS (MODEL_CARD.md)")
    from hific_diffusion.metrics import lpips

    alex = lpips.load_params("alexnet")

    def dist(a, b):
        a, b = lpips.to_model_range(a[None]), lpips.to_model_range(b[None])
        return float(lpips.distance("alexnet", alex, a, b)[0])

    ours = np.mean([dist(x, d[decoder]) for x, d in crops])
    mse = np.mean([dist(x, d["mse"]) for x, d in crops])
    assert ours < mse, (ours, mse)


def test_a_file_written_by_the_previous_version_decodes_to_the_same_latents_and_image():
    """tests/fixtures/previous_version: a crop of skimage's coffee compressed with the
    then default (now tests/fixtures/demo_bundle) by commit 2948314, before tables
    came from the bundle."""
    from hific_diffusion.coding import coding
    from hific_diffusion.pipeline import read_file

    codec = Codec.from_bundle(DEMO_BUNDLE)
    fixtures = Path(__file__).resolve().parent / "fixtures" / "previous_version"
    data = read_file(fixtures / "coffee_v0.hfd")
    record = json.loads((fixtures / "coffee_v0.json").read_text())
    _, sections = codec.read_header(data)
    y_hat, z_hat = coding.decode_latents(codec.coding, sections, (128, 192))
    import hashlib

    digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()  # noqa: E731
    assert digest(np.asarray(z_hat, np.int32)) == record["latents"]["z_hat"]
    assert digest(np.asarray(y_hat, np.float32)) == record["latents"]["y_hat"]
    from PIL import Image

    old = np.asarray(Image.open(fixtures / "coffee_v0_mse.png")).astype(int)
    new = codec.decompress(data, decoder="mse").astype(int)
    assert new.shape == old.shape == (96, 130, 3)
    # g_s's transposed convolutions now run as sub-pixel phases: float rounding only
    assert np.abs(new - old).max() <= 1
