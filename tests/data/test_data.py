"""Input pipeline: sources, crops, host shards, workers, TFDS array_record reading."""

import numpy as np
import pytest
from PIL import Image

from hific_diffusion import configs
from hific_diffusion.data import offline_photos, pipeline, sources, tfds_records


def _data_cfg(**kw):
    cfg = configs.load("tiny").data
    cfg.update(kw)
    return cfg


def _take(cfg, batch, shard, n=3, start=0):
    it = iter(pipeline.make_dataset(cfg, batch, 0, pipeline.shard_options(*shard), start))
    return [next(it) for _ in range(n)]


def test_synthetic_batches_are_deterministic_crops():
    a = _take(_data_cfg(crop=32), 4, (0, 1))
    b = _take(_data_cfg(crop=32), 4, (0, 1))
    assert a[0].shape == (4, 32, 32, 3) and a[0].dtype == np.uint8
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])


def test_host_shards_concatenate_to_the_single_host_batch():
    cfg = _data_cfg(crop=32)
    whole = _take(cfg, 4, (0, 1))
    parts = [_take(cfg, 4, (h, 2)) for h in range(2)]
    for k in range(3):
        np.testing.assert_array_equal(np.concatenate([parts[0][k], parts[1][k]]), whole[k])


def test_start_skips_whole_global_batches():
    cfg = _data_cfg(crop=32)
    np.testing.assert_array_equal(_take(cfg, 4, (1, 2), n=1, start=2)[0], _take(cfg, 4, (1, 2))[2])


def test_worker_processes_give_the_same_batches():
    cfg = _data_cfg(crop=32)
    ref = _take(cfg, 4, (0, 1), n=2)
    got = _take(_data_cfg(crop=32, num_workers=2), 4, (0, 1), n=2)
    for x, y in zip(ref, got, strict=True):
        np.testing.assert_array_equal(x, y)


def test_crop_flip_pads_small_images_and_flips():
    rng = np.random.default_rng(0)
    img = np.arange(10 * 6 * 3, dtype=np.uint8).reshape(10, 6, 3)
    out = pipeline.random_crop_flip(img, 8, False, rng)
    assert out.shape == (8, 8, 3)
    flips = {
        pipeline.random_crop_flip(img[:6, :6], 6, True, np.random.default_rng(s))[0, 0, 0]
        for s in range(20)
    }
    assert flips == {img[0, 0, 0], img[0, 5, 0]}


def test_folder_source_finds_png_jpeg_webp_recursively(tmp_path):
    img = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(img).save(tmp_path / "x.png")
    Image.fromarray(img).save(tmp_path / "a" / "y.JPG")
    Image.fromarray(img).convert("L").save(tmp_path / "a" / "b" / "z.webp", lossless=True)
    (tmp_path / "notes.txt").write_text("not an image")
    src = sources.FolderSource(str(tmp_path))
    assert len(src) == 3
    np.testing.assert_array_equal(src[[p.name for p in src.files].index("x.png")], img)
    assert all(src[i].shape == (20, 24, 3) and src[i].dtype == np.uint8 for i in range(3))


def test_folder_source_errors_are_clear(tmp_path):
    with pytest.raises(sources.DataError, match="not a directory"):
        sources.FolderSource(str(tmp_path / "missing"))
    with pytest.raises(sources.DataError, match="no images"):
        sources.FolderSource(str(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(sources.DataError, match="cannot decode"):
        sources.FolderSource(str(tmp_path))[0]


def test_offline_photos_split_is_fixed_and_disjoint():
    train, held = offline_photos.load("train"), offline_photos.load("heldout")
    assert len(train) == len(offline_photos.TRAIN) and len(held) == 3
    assert not set(offline_photos.TRAIN) & set(offline_photos.HELDOUT)
    for img in train + held:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    with pytest.raises(offline_photos.OfflinePhotosError):
        offline_photos.load("test")


def test_tfds_array_record_split_is_read_without_tensorflow(tmp_path):
    ar = pytest.importorskip("array_record.python.array_record_module")
    import io

    imgs = [(np.random.default_rng(i).random((16, 20, 3)) * 255).astype(np.uint8) for i in range(3)]
    folder = tmp_path / "clic" / "1.0.0"
    folder.mkdir(parents=True)
    writer = ar.ArrayRecordWriter(
        str(folder / "clic-train.array_record-00000-of-00001"), "group_size:1"
    )
    for img in imgs:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        writer.write(tfds_records.encode_example({"filename": b"f.png", "image": buf.getvalue()}))
    writer.close()
    src = sources.make_source(_data_cfg(source="tfds", path=str(tmp_path), name="clic"))
    assert len(src) == 3
    for i, img in enumerate(imgs):
        np.testing.assert_array_equal(src[i], img)


def test_tfds_missing_data_says_how_to_prepare(tmp_path):
    with pytest.raises(tfds_records.TfdsDataError, match="tfds build clic"):
        sources.make_source(_data_cfg(source="tfds", path=str(tmp_path), name="clic"))
    with pytest.raises(tfds_records.TfdsDataError, match="no feature 'image'"):
        tfds_records.example_bytes_feature(tfds_records.encode_example({"label": b"x"}), "image")


def test_training_evaluation_and_the_cli_read_the_same_image_suffixes(tmp_path):
    """One list (images.IMAGE_SUFFIXES): a BMP trains, evaluates and compresses."""
    from PIL import Image

    from hific_diffusion import cli, images
    from hific_diffusion.evaluation import datasets

    img = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    for suffix in images.IMAGE_SUFFIXES:
        Image.fromarray(img).save(tmp_path / f"x{suffix}")
    found = {p.suffix for p in sources.FolderSource(str(tmp_path)).files}
    assert found == set(images.IMAGE_SUFFIXES)
    assert {p.suffix for _, p in datasets._folder(tmp_path, "kodak")} == found
    assert {p.suffix for p in cli.expand_inputs(str(tmp_path), images.IMAGE_SUFFIXES)[0]} == found
