"""The project's cache directory and JAX's persistent compilation cache.

``cache_dir()`` is ``$HFD_CACHE`` or ``~/.cache/hific_diffusion``: FID weights,
the photo corpus and compiled XLA executables live under it.

:func:`enable_compilation_cache` points JAX's persistent compilation cache at
``cache_dir() / "jax"`` (``$HFD_COMPILATION_CACHE`` overrides the path, ``0``
or ``off`` disables it), so a second process that runs a function on shapes
already seen loads the compiled executable instead of compiling again (issue
#13). JAX keys every entry by a hash of the program, the compile options,
the jax/jaxlib version and the device, so an entry of another program,
version or machine is never used; entries are written atomically, so several
processes can share the directory. An unreadable entry makes JAX compile
again (tested by corrupting every entry): it can cost time, never a bit of
the output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMPILATION_CACHE_ENV = "HFD_COMPILATION_CACHE"
# Every compilation is kept: even the ~50 ms ones (random keys when a model is
# built, small eager ops) add up to most of a warm command-line run, and
# reading an entry costs ~1 ms.
MIN_COMPILE_SECONDS = 0.0


def cache_dir() -> Path:
    """``$HFD_CACHE``, else ``~/.cache/hific_diffusion``."""
    return Path(os.environ.get("HFD_CACHE") or Path.home() / ".cache" / "hific_diffusion")


def compilation_cache_dir() -> Path | None:
    """Where compiled executables are kept; None when disabled."""
    value = os.environ.get(COMPILATION_CACHE_ENV, "")
    if value.lower() in ("0", "off", "false", "no"):
        return None
    return Path(value) if value else cache_dir() / "jax"


def enable_compilation_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache (see the module docstring).

    Called by the command-line entry points; a Python user calls it once
    before the first compression. Returns the directory, or None if disabled
    or unusable (then everything compiles as before).
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the user's own JAX setting wins
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    path = compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    settings = {
        "jax_compilation_cache_dir": str(path),
        "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_SECONDS,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    if "jax" in sys.modules:
        import jax

        for key, value in settings.items():
            jax.config.update(key, value)
    else:  # read when jax is imported: keeps `--help` and error paths fast
        for key, value in settings.items():
            os.environ[key.upper()] = str(value)
    return path
