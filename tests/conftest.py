"""One persistent XLA compilation cache for the whole test session, shared with the launch.py
subprocesses that tests start: the same tiny models compile once, not once per test."""

import os
import shutil
import tempfile

import jax

_CACHE_DIR = tempfile.mkdtemp(prefix="vae_jax_xla_cache_")


def pytest_configure(config):
    del config
    # Environment variables for subprocesses; jax.config for this process (already imported).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    del config
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)
