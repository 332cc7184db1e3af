"""A reproducible offline corpus of natural photographs for training.

``python -m hific_diffusion.data.photo_corpus --out DIR`` gathers the photos
listed in ``photo_corpus.json`` into ``DIR/train/<id>.png`` and
``DIR/heldout/<id>.png`` and writes ``DIR/manifest.json``. Train with
``--config.data.source=folder --config.data.path=DIR/train``.

Why these choices:

* Sources are Debian 12 (bookworm) packages fetched with ``apt-get download``
  (wallpapers, puzzle photos, OpenCV's sample images) plus the photos
  scikit-image and scikit-learn ship (:mod:`offline_photos`), so the corpus
  needs no web scraping and every file has a licence in the package's
  ``/usr/share/doc/<pkg>/copyright``, recorded per package (and per file where
  the copyright file or the package's own metadata gives a credit).
* Every source file is pinned by sha256 (for the Python packages: of the
  decoded pixels), so the corpus is the same wherever it is built; a changed
  package is an error unless ``--allow-changed`` accepts and records it.
* The held-out split is fixed by name in the manifest (``heldout``), never
  by a random draw, so a held-out photo can never leak into ``train/``.
* Photos are downscaled (PIL LANCZOS, longer side at most ``--max-side``,
  never upscaled): the low-pass of downscaling averages away the 8x8 JPEG
  blocking the originals carry at full size, the usual reason learned-codec
  training sets are downscaled, so the codec is not taught to reproduce
  another codec's artifacts. Photos already smaller than ``--max-side`` keep
  theirs. EXIF orientation is applied and alpha composited on white; outputs
  are PNG so no new compression artifacts are added.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from hific_diffusion import atomic, errors
from hific_diffusion.cache import cache_dir
from hific_diffusion.data import offline_photos
from hific_diffusion.errors import HfdError

MANIFEST = Path(__file__).with_name("photo_corpus.json")
SPLITS = ("train", "heldout")


class CorpusError(HfdError):
    """A corpus that cannot be gathered; the message is one line."""


def default_dir() -> Path:
    """``$HFD_CACHE/photos``, else ``~/.cache/hific_diffusion/photos``."""
    return cache_dir() / "photos"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_manifest(path: Path = MANIFEST) -> dict:
    """Read and check a corpus manifest (the shipped one or a test's)."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CorpusError(f"cannot read manifest {path}: {e}") from e
    check_manifest(manifest, str(path))
    return manifest


def check_manifest(m: dict, where: str = "manifest") -> None:
    """Unique ids, known packages with a version and licence, consistent splits."""
    pkgs, files = m.get("packages", {}), m.get("files", [])
    for name, p in pkgs.items():
        if not p.get("version") or not p.get("licence"):
            raise CorpusError(f"{where}: package {name} needs a version and a licence")
    ids = [f.get("id") for f in files]
    if len(set(ids)) != len(ids):
        raise CorpusError(f"{where}: duplicate photo ids")
    for f in files:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", str(f.get("id"))):
            raise CorpusError(f"{where}: photo id {f.get('id')!r} is not [a-z0-9._-]")
        if f.get("package") not in pkgs or not f.get("path") or len(f.get("sha256", "")) != 64:
            raise CorpusError(f"{where}: photo {f.get('id')} needs a known package, path, sha256")
        if f.get("split") not in SPLITS:
            raise CorpusError(f"{where}: photo {f['id']} has split {f.get('split')!r}")
    heldout = {f["id"] for f in files if f["split"] == "heldout"}
    if set(m.get("heldout", [])) != heldout:
        raise CorpusError(f"{where}: 'heldout' list and the files' splits disagree")


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise CorpusError(f"{what}: cannot run {cmd[0]}: {e.strerror or e}") from e
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith("E:")] or lines or ["no output"]
        raise CorpusError(f"{what} failed (exit {r.returncode}): {errs[-1].strip()}")
    return r


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field], f"dpkg-deb -f {deb.name}").stdout.strip()


def fetch_deb(name: str, version: str, debs: Path | None, tmp: Path) -> Path:
    """The .deb of ``name`` from ``debs`` (that version preferred) or ``apt-get download``."""
    if debs is not None:
        found = [
            d for d in sorted(Path(debs).glob(f"{name}_*.deb")) if _deb_field(d, "Package") == name
        ]
        if not found:
            raise CorpusError(f"no {name}_*.deb in {debs}")
        return next((d for d in found if _deb_field(d, "Version") == version), found[-1])
    hint = " (offline? run apt-get update, or pass --debs DIR)"
    try:
        _run(["apt-get", "download", name], f"apt-get download {name}", cwd=tmp, timeout=1800)
    except subprocess.TimeoutExpired as e:
        raise CorpusError(f"apt-get download {name} timed out{hint}") from e
    except CorpusError as e:
        raise CorpusError(f"{e}{hint}") from e
    found = sorted(tmp.glob(f"{name}_*.deb"))
    if not found:
        raise CorpusError(f"apt-get download {name} wrote no .deb{hint}")
    return found[-1]


def prepare(im: Image.Image, max_side: int) -> Image.Image:
    """EXIF orientation, alpha on white, RGB, longer side <= ``max_side`` (LANCZOS)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    im = im.convert("RGB")
    w, h = im.size
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return im


def _source_images(m: dict, pkg: str, files: list[dict], debs: Path | None, tmp: Path):
    """Yield ``(entry, version, original bytes or pixels, PIL image)`` for one package."""
    info = m["packages"][pkg]
    if info.get("source") == "offline_photos":
        for f in files:
            try:
                arr = offline_photos.photo(f["path"])
            except offline_photos.OfflinePhotosError as e:
                raise CorpusError(str(e)) from e
            yield f, info["version"], np.ascontiguousarray(arr).tobytes(), Image.fromarray(arr)
        return
    deb = fetch_deb(pkg, info["version"], debs, tmp)
    version = _deb_field(deb, "Version")
    root = tmp / f"x-{pkg}"
    _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
    try:
        for f in files:
            src = root / f["path"].lstrip("/")
            if not src.is_file():
                raise CorpusError(f"{f['path']} is not in {pkg} {version}")
            data = src.read_bytes()
            try:
                with Image.open(src) as im:
                    im.load()
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                msg = f"{f['path']} in {pkg} {version} is not a readable image: {e}"
                raise CorpusError(msg) from None
            yield f, version, data, im
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if debs is None:
            deb.unlink(missing_ok=True)


def _is_complete(out: Path, digest: str, max_side: int) -> bool:
    try:
        done = json.loads((out / "manifest.json").read_text())
        return (
            done.get("source_manifest_sha256") == digest
            and done.get("max_side") == max_side
            and all(
                sha256((out / p["file"]).read_bytes()) == p["output_sha256"] for p in done["photos"]
            )
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build(
    out: Path,
    manifest_path: Path = MANIFEST,
    max_side: int = 1024,
    debs: Path | None = None,
    allow_changed: bool = False,
    command: str = "",
) -> dict | None:
    """Gather the corpus into ``out``; ``None`` when ``out`` is already complete."""
    from tqdm import tqdm

    m = load_manifest(manifest_path)
    digest = sha256(Path(manifest_path).read_bytes())
    out = Path(out).expanduser()
    if _is_complete(out, digest, max_side):
        return None
    if debs is not None and not Path(debs).is_dir():
        raise CorpusError(f"--debs {debs} is not a directory")
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    # Remove every earlier output of these ids (and of the ids an earlier manifest listed)
    # from both splits first, so a photo whose split changed can never stay in train/.
    ids = {f["id"] for f in m["files"]}
    try:
        ids |= {str(p["id"]) for p in json.loads((out / "manifest.json").read_text())["photos"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for i, split in ((i, s) for i in ids for s in SPLITS):
        if re.fullmatch(r"[a-z0-9][a-z0-9._-]*", i):
            (out / split / f"{i}.png").unlink(missing_ok=True)
    by_pkg: dict[str, list[dict]] = {}
    for f in m["files"]:
        by_pkg.setdefault(f["package"], []).append(f)
    photos = []
    with (
        tempfile.TemporaryDirectory(prefix="hfd-photos-") as tmp,
        tqdm(total=len(m["files"]), unit="photo", file=sys.stderr, disable=None) as bar,
    ):
        for pkg, files in by_pkg.items():
            bar.set_postfix_str(pkg)
            for f, version, data, im in _source_images(m, pkg, files, debs, Path(tmp)):
                rec = {"id": f["id"], "split": f["split"], "package": pkg, "version": version}
                rec.update(path=f["path"], sha256=f["sha256"])
                actual = sha256(data)
                if actual != f["sha256"]:
                    msg = f"{f['path']} in {pkg} {version} has sha256 {actual}"
                    msg += f", manifest says {f['sha256']}"
                    if not allow_changed:
                        raise CorpusError(f"{msg} (pass --allow-changed to accept it)")
                    bar.write(f"warning: {msg}; recording the new hash", file=sys.stderr)
                    rec.update(sha256=actual, manifest_sha256=f["sha256"])
                rgb = prepare(im, max_side)
                rec["file"] = f"{f['split']}/{f['id']}.png"
                rgb.save(out / rec["file"], format="PNG")
                rec.update(
                    licence=f.get("licence", m["packages"][pkg]["licence"]),
                    **({"credit": f["credit"]} if "credit" in f else {}),
                    original_size=list(im.size),
                    output_size=list(rgb.size),
                    output_sha256=sha256((out / rec["file"]).read_bytes()),
                )
                photos.append(rec)
                bar.update()
    result = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source_manifest": str(manifest_path),
        "source_manifest_sha256": digest,
        "max_side": max_side,
        "counts": {s: sum(p["split"] == s for p in photos) for s in SPLITS},
        "photos": photos,
    }
    # Written last (atomically): a partial run is never "complete".
    text = json.dumps(result, indent=1, ensure_ascii=False) + "\n"
    atomic.write_text(out / "manifest.json", text)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = errors.ArgumentParser(
        prog="python -m hific_diffusion.data.photo_corpus", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--out", type=Path, default=default_dir(), help="corpus folder (default: %(default)s)"
    )
    ap.add_argument("--max-side", type=int, default=1024, help="longest output side in pixels")
    ap.add_argument(
        "--debs", type=Path, help="take the .deb files from this folder instead of apt-get"
    )
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help="an alternative photo manifest")
    ap.add_argument(
        "--allow-changed",
        action="store_true",
        help="accept (and record) a source whose sha256 differs from the manifest",
    )
    args = ap.parse_args(argv)
    if args.max_side < 1:
        ap.error("--max-side must be positive")
    command = shlex.join(["python", "-m", "hific_diffusion.data.photo_corpus", *argv])
    try:
        result = build(
            args.out, args.manifest, args.max_side, args.debs, args.allow_changed, command
        )
    except errors.USER_ERRORS as e:
        return errors.report(e)
    except KeyboardInterrupt:
        return errors.interrupted()
    if result is None:
        print(f"{args.out} is already complete (manifest.json matches); nothing to do")
    else:
        c = result["counts"]
        print(f"wrote {c['train']} train and {c['heldout']} held-out photos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
