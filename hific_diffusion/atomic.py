"""Atomic file outputs: write a temporary file beside the target, then rename.

Every output the project writes for a user (CLI results, eval bitstreams,
reconstructions and reports, bundles, exports) goes through
:func:`atomic_write`: the data goes to ``.<name>.<random>.tmp`` in the target's
directory, is flushed and fsynced, and only then ``os.replace``-d onto the
final name (atomic within one file system, hence the same directory). A
reader, an exception mid-write, a full disk or ``kill -9`` therefore leaves
either the previous file or the complete new one under the final name, never
a partial one. The temporary file is removed on any error; only a hard kill
can leave one behind, and never under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_in(path: str) -> tuple[int, str]:
    d, name = os.path.split(os.path.abspath(path))
    return tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=d)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, encoding: str = "utf-8", newline: str | None = None):
    """``with atomic_write(path) as f: f.write(...)``: ``path`` appears complete or not at all.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding``/``newline`` as for ``open``).
    A file that already exists keeps its permission bits; a new one gets the
    usual ``0o666 & ~umask``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    try:
        perms = os.stat(path).st_mode & 0o7777
    except OSError:
        perms = 0o666 & ~_umask()
    fd, tmp = _tmp_in(path)
    try:
        text = {} if mode == "wb" else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def check_writable(path) -> None:
    """Raises OSError (``filename`` = ``path``) unless a file can be written at ``path``.

    Used before slow work, so that an unwritable output is reported up front:
    it creates and removes a temporary file where :func:`atomic_write` would.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    try:
        fd, tmp = _tmp_in(path)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    os.close(fd)
    os.unlink(tmp)
