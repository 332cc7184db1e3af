"""Trainer tests compile the same tiny step many times (every run, every
subprocess); a persistent compilation cache shared by them keeps the suite fast."""

import os
import tempfile

import jax

CACHE = os.path.join(tempfile.gettempdir(), "hfd_test_jax_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE)
# Subprocesses (the CLI tests) read these from the environment.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
