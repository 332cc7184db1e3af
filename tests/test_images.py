import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from hific_diffusion import images
from hific_diffusion.coding import bitstream
from hific_diffusion.images import ImageError, ImageWarning


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


@pytest.mark.parametrize(
    "fmt, channels",
    [("png", 3), ("png", 4), ("png", 2), ("tiff", 3), ("tiff", 4)],
    ids=["png_rgb", "png_rgba", "png_gray_alpha", "tiff_rgb", "tiff_rgba"],
)
def test_sixteen_bit_colour_maps_to_eight_bit_by_rounding_x_over_257(tmp_path, fmt, channels):
    """PIL reads 16-bit colour by keeping the high byte (x >> 8): 1 in 4 values off by one."""
    import imagecodecs

    rng = np.random.default_rng(channels)
    x = rng.integers(0, 65536, (6, 9, channels), dtype=np.uint16)
    x[..., -1] = 65535 if channels != 3 else x[..., -1]  # opaque: alpha leaves colour alone
    x[0, :3, 0] = [200, 65300, 65535]  # >> 8 gives 0, 255, 255; round(x / 257) 1, 254, 255
    encode = imagecodecs.png_encode if fmt == "png" else imagecodecs.tiff_encode
    (tmp_path / f"c.{fmt}").write_bytes(encode(x))
    out = images.load(tmp_path / f"c.{fmt}")
    want = np.round(x[..., : 3 if channels != 2 else 1] / 257.0).astype(np.uint8)
    assert out.shape == (6, 9, 3)
    assert np.array_equal(out, np.broadcast_to(want, out.shape))
    assert out[0, :3, 0].tolist() == [1, 254, 255]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares a size and holds (almost) no pixels."""

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
        + chunk(b"IEND", b"")
    )  # fmt: skip


@pytest.mark.parametrize(
    "width, height",
    [(16384, 16384), (65535, 1), (1, 65535), (14000, 14000)],
    ids=["2^28_pixels", "widest", "tallest", "above_pil_bomb_limit"],
)
def test_sizes_within_the_limit_pass_the_size_check(tmp_path, width, height):
    """Accepted from the header (what fails, if anything, is the missing pixel data);
    14000 x 14000 is past PIL's decompression-bomb error, which no longer decides."""
    assert bitstream.size_problem(height, width) is None
    (tmp_path / "big.png").write_bytes(_png_header(width, height))
    try:
        out = images.load(tmp_path / "big.png")
    except ImageError as e:
        assert "unsupported" not in str(e) and "bomb" not in str(e), e
    else:  # PIL may fill a short image (here 1 x 65535) instead of failing
        assert out.shape == (height, width, 3)


@pytest.mark.parametrize(
    "width, height, fragment",
    [
        (16385, 16384, "2^28 pixels"),
        (20000, 20000, "2^28 pixels"),
        (65536, 1, "1..65535"),
        (1, 65536, "1..65535"),
    ],
)
def test_sizes_beyond_the_limit_get_our_message_before_any_pixel(tmp_path, width, height, fragment):
    (tmp_path / "big.png").write_bytes(_png_header(width, height))
    with pytest.raises(ImageError, match="unsupported") as e:
        images.load(tmp_path / "big.png")
    assert fragment in str(e.value) and f"{height}x{width}" in str(e.value)
    # Arrays: the same limit, checked before any conversion (a broadcast view costs nothing).
    view = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))
    with pytest.raises(ImageError, match=fragment.replace("^", r"\^")):
        images.to_uint8_rgb(view)


def test_animated_gif_gives_its_first_frame_with_a_one_line_warning(tmp_path):
    frames = [Image.fromarray(np.full((4, 5, 3), v, np.uint8)) for v in (30, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(ImageWarning, match="first") as rec:
        out = images.load(tmp_path / "a.gif")
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert out.shape == (4, 5, 3) and abs(int(out[0, 0, 0]) - 30) <= 2
    frames[0].save(tmp_path / "still.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageWarning)  # a still GIF warns nothing
        images.load(tmp_path / "still.gif")
