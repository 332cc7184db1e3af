"""SHA-256 of bytes and files, and the sha256 manifests of written directories.

A model bundle (``bundle.py``) and a StableHLO export (``stablehlo.py``) are
each a directory with ``manifest.json``: a format name, a version, the sha256
of every file and fields of their own. :func:`write_manifest` writes such a
directory, :func:`read_manifest` and :func:`verify_files` check one; their
errors are the caller's exception class, one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hific_diffusion import atomic

MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path, files: dict[str, bytes], fmt: str, version: int, **fields) -> Path:
    """Writes ``files`` ({relative path: bytes}) under ``path``, then
    ``manifest.json`` listing their sha256 beside ``fmt``, ``version`` and
    ``fields``. Each file is written atomically and the manifest last, so an
    interrupted write never leaves a manifest that vouches for a partial file."""
    path = Path(path)
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path / rel, data)
    manifest = dict(fields, format=fmt, version=version)
    manifest["files"] = {rel: sha256_bytes(data) for rel, data in sorted(files.items())}
    atomic.write_text(path / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def read_manifest(path, fmt: str, versions, error: type[Exception], what: str) -> dict:
    """The manifest of the directory ``path`` (a ``what``, e.g. "model
    bundle"), with ``files`` a dict; ``error`` if the directory or its
    manifest is missing or corrupt, or of another format or version."""
    path = Path(os.fspath(path))
    if not path.is_dir():
        raise error(f"no {what} at {path} (not a directory)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise error(f"not a {what}: {mpath} is missing")
    try:
        manifest = json.loads(mpath.read_text())
        manifest["files"] = dict(manifest["files"])
        ok = manifest.get("format") == fmt
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise error(f"corrupt {what} manifest: {mpath}") from None
    if not ok:
        raise error(f"not a {what}: {mpath} has another format")
    if manifest.get("version") not in versions:
        raise error(f"unsupported {what} version {manifest.get('version')} in {mpath}")
    return manifest


def verify_files(path, files: dict[str, str], error: type[Exception], what: str) -> None:
    """Every file of ``files`` ({relative path: hex sha256}) exists inside
    ``path`` and has that hash; else ``error`` naming the file."""
    path = Path(os.fspath(path))
    for rel, digest in sorted(files.items()):
        f = path / rel
        if ".." in Path(rel).parts or not f.is_file():
            raise error(f"{what} file missing: {f}")
        if sha256_file(f) != digest:
            raise error(f"{what} file altered (sha256 mismatch): {f}")
