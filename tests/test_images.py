import numpy as np
import pytest
from PIL import Image

from hific_diffusion import images
from hific_diffusion.images import ImageError


def test_grayscale_is_replicated_into_rgb(tmp_path):
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = images.load(tmp_path / "g.png")
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], g) for c in range(3))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]  # opaque keeps its colour
    rgba[0, 1] = [10, 20, 30, 0]  # transparent becomes white
    rgba[1, 0] = [0, 0, 0, 128]  # half-transparent black is mid grey
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = images.load(tmp_path / "a.png")
    assert list(out[0, 0]) == [10, 20, 30]
    assert list(out[0, 1]) == [255, 255, 255]
    assert list(out[1, 0]) == [127, 127, 127]


def test_la_is_composited_on_white():
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA")
    out = images.from_pil(la)
    assert out[0, 0].tolist() == [255] * 3 and out[0, 1].tolist() == [50] * 3


def test_palette_is_expanded_to_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).quantize(4).save(tmp_path / "p.png")
    pal = Image.open(tmp_path / "p.png")
    assert pal.mode == "P"
    assert np.array_equal(images.load(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_sixteen_bit_maps_to_eight_bit_by_rounding_x_over_257(tmp_path):
    v = np.array([[0, 257, 128, 65535, 385]], np.uint16)
    Image.fromarray(v).save(tmp_path / "d.png")
    out = images.load(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 1, 0, 255, 1]
    arr = images.to_uint8_rgb(np.stack([v] * 3, -1))
    assert arr[0, :, 1].tolist() == [0, 1, 0, 255, 1]


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = 255  # a marker at the top-left
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = images.load(tmp_path / "r.jpg")
    assert out.shape == (3, 2, 3)
    assert out[0, 1].mean() > 200 and out[0, 0].mean() < 60  # marker now top-right


@pytest.mark.parametrize("shape", [(1, 1), (63, 65), (1000, 3)])
def test_any_size_loads(tmp_path, shape):
    rgb = np.random.default_rng(1).integers(0, 255, (*shape, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    assert np.array_equal(images.load(tmp_path / "x.png"), rgb)


def test_missing_directory_and_non_image_files_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        images.load(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        images.load(tmp_path)
    (tmp_path / "t.png").write_text("not an image at all")
    with pytest.raises(ImageError, match="cannot read"):
        images.load(tmp_path / "t.png")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError):
        images.load(tmp_path / "cut.png")


def test_bad_arrays_raise_image_error():
    for bad in (
        np.zeros((0, 4, 3)),
        np.zeros((4, 4, 5)),
        np.zeros((2, 2, 2, 3)),
        np.full((2, 2), np.nan),
    ):
        with pytest.raises(ImageError):
            images.to_uint8_rgb(bad)
    with pytest.raises(ImageError):
        images.as_uint8_rgb(42)


def test_pad_then_crop_is_identity_and_padding_repeats_edges():
    x = np.random.default_rng(2).integers(0, 255, (63, 65, 3), dtype=np.uint8)
    p = images.pad_to_multiple(x, 64)
    assert p.shape == (64, 128, 3)
    assert np.array_equal(p[63], p[62]) and np.array_equal(p[:, 100], p[:, 64])
    assert np.array_equal(images.crop(p, 63, 65), x)
    assert images.pad_to_multiple(p, 64) is p
    assert images.pad_to_multiple(x[None], 64).shape == (1, 64, 128, 3)
