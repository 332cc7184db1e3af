"""Stage 2's conditioning computed once: each training photo's ``x_mse``,
decoded by the codec from a real bitstream of the whole photo.

Without it the stage-2 trainer runs the frozen autoencoder on every random
crop (``train.tasks.reconstruct``): a sixth of a photo-model diffusion step on
a CPU, and the reconstruction of a *crop*, which is not what a decoder ever
conditions on. (Photo model, 64 px crops of six training photos: the crop's
own x_mse is 0.05-1.3 dB worse than the same window of the whole photo's; the
decoder learnt to undo crop-border errors no decoded file has.)

    python -m hific_diffusion.data.reconstructions --autoencoder=runs/photos/ae_0.3 \\
        --data=$HFD_PHOTOS/train --out=runs/photos/x_mse_0.3
    python -m hific_diffusion.train --config=photos:diffusion:0.3 ... \\
        --config.data.reconstructions=runs/photos/x_mse_0.3

A folder holds ``<photo's path under --data>.png`` (its x_mse, 8-bit RGB) and
``manifest.json``: the autoencoder's digest (:func:`autoencoder_digest`) and
the sha256 of every photo and reconstruction. The trainer refuses a folder
that another autoencoder made, or that misses or mismatches a photo
(:class:`PairedSource`), so it can never condition on stale reconstructions.

ASSUMPTION: x_mse rounded to 8 bits (the codec hands the decoder floats):
the rounding error (0.29/255 rms) is ~30x below x_mse's own error at 0.3 bpp.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from hific_diffusion import atomic, hashing
from hific_diffusion.errors import HfdError

FORMAT = "hific_diffusion.reconstructions"
VERSION = 1


class ReconstructionsError(HfdError, ValueError):
    """A reconstructions folder that does not fit the photos or the autoencoder."""


def autoencoder_digest(state) -> str:
    """Hex sha256 of an autoencoder's variables (an ``nnx.State``): names,
    dtypes, shapes and bytes, in name order."""
    from hific_diffusion import flatstate

    h = hashlib.sha256()
    for name, a in sorted(flatstate.flatten_state(state).items()):
        h.update(f"{name}|{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _png(x: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return buf.getvalue()


def build(autoencoder: str, data: str, out: str, *, progress: bool = True) -> Path:
    """Writes the reconstructions of every photo under ``data`` (as
    ``FolderSource`` lists them) by the autoencoder of ``autoencoder`` (a
    bundle or a training workdir) to ``out``; returns ``out``. Does nothing
    when ``out`` already holds them (same autoencoder, same photos)."""
    from flax import nnx

    from hific_diffusion import images
    from hific_diffusion.data.sources import FolderSource
    from hific_diffusion.pipeline import Codec

    source = FolderSource(data)
    codec = Codec.load(autoencoder)
    if codec.autoencoder is None:
        raise ReconstructionsError(f"{autoencoder} has no autoencoder (a CDC model?)")
    digest = autoencoder_digest(nnx.state(codec.autoencoder))
    root, out = Path(data).expanduser(), Path(out)
    if _up_to_date(source, out, digest):
        return out
    # No manifest vouches for the files while they are rewritten.
    (out / hashing.MANIFEST).unlink(missing_ok=True)
    photos = {}
    files = list(source.files)
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="x_mse", unit="photo", file=sys.stderr)
    for path in files:
        rel = path.relative_to(root).as_posix()
        x = images.load(path)
        _, x_mse = codec.decompress_mse(codec.compress(x))
        png = _png(images.to_uint8(x_mse[0]))
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(out / f"{rel}.png", png)
        photos[rel] = dict(
            photo=hashing.sha256_file(path),
            x_mse=hashing.sha256_bytes(png),
            shape=list(x.shape),
        )
    manifest = dict(
        format=FORMAT,
        version=VERSION,
        autoencoder=str(autoencoder),
        autoencoder_digest=digest,
        photos=photos,
        files={},  # read_manifest's field; the photos carry their hashes
    )
    atomic.write_text(out / hashing.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out


def _up_to_date(source, out: Path, digest: str) -> bool:
    """Whether ``out`` already holds these photos' reconstructions by this
    autoencoder (a rerun then does nothing)."""
    if not (out / hashing.MANIFEST).is_file():
        return False
    try:
        if read(out).get("autoencoder_digest") != digest:
            return False
        PairedSource(source, out)
    except ReconstructionsError:
        return False
    return True


def read(path) -> dict:
    """The manifest of a reconstructions folder (ReconstructionsError if none)."""
    return hashing.read_manifest(
        path, FORMAT, (VERSION,), ReconstructionsError, "reconstructions folder"
    )


def check_autoencoder(path, state) -> None:
    """ReconstructionsError unless the folder's x_mse came from this
    autoencoder (``state``: its ``nnx.State``)."""
    manifest = read(path)
    if manifest.get("autoencoder_digest") != autoencoder_digest(state):
        raise ReconstructionsError(
            f"the reconstructions in {path} were made by another autoencoder "
            f"({manifest.get('autoencoder')}) than train.autoencoder_checkpoint; rebuild them: "
            "python -m hific_diffusion.data.reconstructions --autoencoder=<it> ..."
        )


class PairedSource:
    """A FolderSource's photos, each with its x_mse as three more channels:
    uint8 ``[H, W, 6]``, so one random crop and flip cuts both the same way.

    Checks at construction that the folder has a reconstruction of every
    photo, made from these very bytes and verified by its hash."""

    def __init__(self, source, path):
        self.source, self.path = source, Path(path).expanduser()
        photos = read(self.path)["photos"]
        root = Path(source.root)
        self.x_mse = []
        for f in source.files:
            rel = f.relative_to(root).as_posix()
            entry = photos.get(rel)
            if entry is None:
                raise ReconstructionsError(f"{self.path} has no reconstruction of {rel}")
            if hashing.sha256_file(f) != entry["photo"]:
                raise ReconstructionsError(
                    f"{rel} changed since its reconstruction in {self.path} was made; rebuild it"
                )
            self.x_mse.append((self.path / f"{rel}.png", entry["x_mse"]))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        from hific_diffusion.data.sources import decode_image

        x = self.source[index]
        path, digest = self.x_mse[index]
        data = path.read_bytes()
        if hashing.sha256_bytes(data) != digest:
            raise ReconstructionsError(f"{path} is corrupt (sha256 mismatch)")
        x_mse = decode_image(data, str(path))
        if x_mse.shape != x.shape:
            raise ReconstructionsError(f"{path} is {x_mse.shape[:2]}, its photo {x.shape[:2]}")
        return np.concatenate([x, x_mse], axis=-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hific_diffusion.data.reconstructions",
        description=__doc__.splitlines()[0],
    )
    ap.add_argument("--autoencoder", required=True, help="bundle or training workdir")
    ap.add_argument("--data", required=True, help="folder of training photos")
    ap.add_argument("--out", required=True, help="folder to write")
    args = ap.parse_args(argv)
    try:
        out = build(args.autoencoder, args.data, args.out)
    except HfdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(read(out)['photos'])} reconstructions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
