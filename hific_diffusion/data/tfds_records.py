"""Read TFDS-prepared array_record files without TensorFlow.

Preparing the data (once, on a machine with ``tensorflow-datasets``)::

    pip install tensorflow-datasets
    tfds build clic --file_format=array_record --data_dir=~/tensorflow_datasets
    tfds build coco/2017 --file_format=array_record --data_dir=~/tensorflow_datasets

CLIC 2020 is TFDS's ``clic`` builder; CLIC 2022 has no public TFDS builder:
write one (an ``image`` feature per record) or use ``data.source=folder`` on
the unpacked images. Then train with ``--config.data.source=tfds
--config.data.path=~/tensorflow_datasets --config.data.name=clic``.

Each record is a serialized ``tf.train.Example`` whose ``image`` feature holds
the encoded PNG/JPEG bytes. The tiny protobuf subset needed to pull that field
out is decoded here by hand, so training does not need TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from hific_diffusion.coding.bitstream import encode_varint
from hific_diffusion.errors import HfdError


class TfdsDataError(HfdError, ValueError):
    """Missing or unreadable TFDS array_record data."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise TfdsDataError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """Yield ``(field_number, payload)`` of the length-delimited fields of a message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise TfdsDataError("truncated protobuf field")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise TfdsDataError(f"unsupported protobuf wire type {wire}")


def example_bytes_feature(record: bytes, key: str) -> bytes:
    """First bytes value of feature ``key`` in a serialized ``tf.train.Example``."""
    want = key.encode()
    for n_features, features in _fields(record):  # Example.features = 1
        if n_features != 1:
            continue
        for n_entry, entry in _fields(features):  # Features.feature (map) = 1
            if n_entry != 1:
                continue
            name = value = None
            for n, payload in _fields(entry):
                if n == 1:
                    name = payload
                elif n == 2:
                    value = payload
            if name != want or value is None:
                continue
            for n_list, blist in _fields(value):  # Feature.bytes_list = 1
                if n_list == 1:
                    for n_val, data in _fields(blist):  # BytesList.value = 1
                        if n_val == 1:
                            return data
            raise TfdsDataError(f"feature {key!r} is not a bytes feature")
    raise TfdsDataError(f"record has no feature {key!r}")


def _encode_field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def encode_example(features: dict[str, bytes]) -> bytes:
    """A serialized ``tf.train.Example`` of bytes features (the inverse of
    :func:`example_bytes_feature`), to write small array_record sets without
    TensorFlow, e.g. for tests."""
    entries = b"".join(
        _encode_field(
            1,
            _encode_field(1, k.encode()) + _encode_field(2, _encode_field(1, _encode_field(1, v))),
        )
        for k, v in features.items()
    )
    return _encode_field(1, entries)


def find_files(data_dir: str, name: str, split: str) -> list[str]:
    root = Path(data_dir).expanduser() / name
    files = sorted(str(p) for p in root.rglob(f"*-{split}.array_record*")) if root.is_dir() else []
    if not files:
        raise TfdsDataError(
            f"no array_record files for {name!r} split {split!r} under {root}; prepare them with "
            f"`tfds build {name or '<builder>'} --file_format=array_record --data_dir={data_dir}` "
            "(see hific_diffusion/data/tfds_records.py)"
        )
    return files


class TfdsSource:
    """Random access over a TFDS split stored as array_record shards."""

    def __init__(self, data_dir: str, name: str, split: str, decode, key: str = "image"):
        if not name:
            raise TfdsDataError("data.name must name the TFDS builder (e.g. 'clic' or 'coco')")
        files = find_files(data_dir, name, split)
        try:
            import grain
        except ImportError as e:  # pragma: no cover - grain is a dependency
            raise TfdsDataError(f"grain is needed to read array_record: {e}") from e
        self._records = grain.sources.ArrayRecordDataSource(files)
        self._decode, self._key = decode, key

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int):
        record = self._records[index]
        return self._decode(example_bytes_feature(record, self._key), f"#{index}")
