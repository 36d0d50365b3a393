"""Data parallelism: 8 fake CPU devices train and evaluate like 1 device on the same global batch.

The 8-device runs are subprocesses: XLA_FLAGS must be set before JAX starts.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import shapes
from vae_jax import parallel, train
from vae_jax.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
EIGHT_CPU_DEVICES = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
# 40 test examples in batches of 16: the last batch (8) is padded and masked.
OVERRIDES = dict(num_steps=5, log_every=1, eval_every=5, checkpoint_every=5, batch_size=16)


def launch(workdir: Path, *overrides: str) -> subprocess.CompletedProcess:
    flags = [f"--config.train.{key}={value}" for key, value in OVERRIDES.items()]
    return subprocess.run(
        [sys.executable, "launch.py", "--config=experiments/shapes.py:tiny", f"--workdir={workdir}"]
        + flags
        + ["--config.eval.num_examples=40", *overrides],
        cwd=REPO,
        env=EIGHT_CPU_DEVICES,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_eight_devices_give_the_loss_curve_and_test_elbo_of_one(tmp_path):
    result = launch(tmp_path / "eight")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Data parallel over 8 cpu device(s)" in result.stderr

    config = shapes.get_config("tiny")
    config.train.update(OVERRIDES)
    config.eval.num_examples = 40
    train.train_and_evaluate(config, tmp_path / "one")  # this process sees one CPU device

    eight, one = read_metrics(tmp_path / "eight"), read_metrics(tmp_path / "one")
    for name in ["loss", "elbo", "rate", "distortion", "grad_norm"]:
        curve_eight = [r[name] for r in eight if name in r]
        curve_one = [r[name] for r in one if name in r]
        assert len(curve_one) == 5
        np.testing.assert_allclose(curve_eight, curve_one, rtol=1e-5, err_msg=name)
    test_eight = [r for r in eight if "test/elbo" in r]
    test_one = [r for r in one if "test/elbo" in r]
    for name in ["test/elbo", "test/rate", "test/distortion"]:
        np.testing.assert_allclose(test_eight[0][name], test_one[0][name], rtol=1e-5)


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path):
    result = launch(tmp_path / "run", "--config.train.batch_size=12")
    assert result.returncode != 0
    assert "train.batch_size=12 must be a multiple of the device count 8" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_pad_to_pads_with_zeros_and_masks_the_padding():
    batch = {"image": np.ones((3, 2, 2, 1), np.float32), "label": np.arange(3)}
    padded, mask = parallel.pad_to(batch, 8)
    assert padded["image"].shape == (8, 2, 2, 1) and padded["label"].tolist() == [0, 1, 2] + [0] * 5
    assert padded["image"][3:].sum() == 0
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("batch_size", [1, 7])
def test_batch_sizes_split_over_a_one_device_mesh(batch_size):
    parallel.check_divisible("train.batch_size", batch_size, parallel.make_mesh())
