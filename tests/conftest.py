"""One persistent XLA compilation cache for the whole test session, shared with the launch.py
subprocesses that tests start: the same tiny models compile once, not once per test. And XLA's
backend optimisation off (--xla_backend_optimization_level=0) for this process and every
subprocess: the tests' tiny models spend far more time compiling than running (a tiny shapes
model on 2 CPU cores: init compiles in 2.4 s instead of 8.7 s, the train step in 4.1 s instead of
7.0 s, 20 steps run in 0.47 s instead of 0.34 s), and XLA:CPU's older elemental emitters instead
of its fusion emitters (--xla_cpu_use_fusion_emitters=false: a tiny shapes run's train step
compiles in 1.5 s instead of 3.2 s, the whole run takes 10.3-10.9 s instead of 14.8-15.3 s; the
suite 9 min 51 s instead of 12 min 10 s). Users' runs keep XLA's default.

With JAX_COMPILATION_CACHE_DIR set, that directory is used and kept, so a repeated run (the
`pytest -m "not slow"` inner loop) compiles almost nothing; otherwise a temporary one is made and
removed at the end.
"""

import os
import shutil
import tempfile

# Before JAX initialises its backend (at the first computation), and inherited by subprocesses.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
).strip()

import jax  # noqa: E402

# pytest-xdist workers inherit the directory that the main process sets up below, so they share
# one cache: JAX writes entries in place, and an entry read while another worker writes it is
# recompiled with a warning (jax._src.compiler._cache_read), never used torn.
_KEEP_CACHE = bool(os.environ.get("JAX_COMPILATION_CACHE_DIR"))
_CACHE_DIR = os.environ.get("JAX_COMPILATION_CACHE_DIR") or tempfile.mkdtemp(
    prefix="vae_jax_xla_cache_"
)


def pytest_configure(config):
    del config
    # Environment variables for subprocesses; jax.config for this process (already imported).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    del config
    if not _KEEP_CACHE:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


# The test files that take longest start first, so that with two pytest-xdist workers (one file
# each at a time) the short files fill the end instead of one long file running alone.
LONGEST_FIRST = (
    "test_train.py",
    "test_tfds.py",
    "test_robustness.py",
    "test_parallel.py",
    "test_evaluation.py",
    "test_sweep.py",
    "test_models.py",
    "test_launch.py",
)


def pytest_collection_modifyitems(config, items):
    del config

    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file stays
