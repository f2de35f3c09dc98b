"""Test-session settings: a persistent JAX compilation cache shared by the test processes.

Many tests (and the CLI subprocesses they start) compile the same small programs; a cache in a
per-session temporary folder lets later compilations reuse earlier ones. It is set through
environment variables before jax is imported, so subprocesses inherit it.
"""

import os
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="metajax-test-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
