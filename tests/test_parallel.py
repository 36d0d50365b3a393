"""Data parallelism: 8 fake CPU devices train and evaluate like 1 device on the same global batch.

The 8-device runs are subprocesses: XLA_FLAGS must be set before JAX starts.
"""

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import shapes
from vae_jax import parallel, train
from vae_jax.writers import read_metrics

pytestmark = pytest.mark.slow  # every test here trains or starts processes

REPO = Path(__file__).resolve().parents[1]
EIGHT_CPU_DEVICES = {
    **os.environ,
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8",
}
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
        # atol: the rate starts near 1e-4 nats, where summation order shows at 1e-5 relative.
        np.testing.assert_allclose(curve_eight, curve_one, rtol=1e-5, atol=1e-6, err_msg=name)
    test_eight = [r for r in eight if "validation/elbo" in r]
    test_one = [r for r in one if "validation/elbo" in r]
    for name in ["validation/elbo", "validation/rate", "validation/distortion"]:
        np.testing.assert_allclose(test_eight[0][name], test_one[0][name], rtol=1e-5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_with_four_devices_each_train_like_one_device(tmp_path):
    """Multi-host on one machine: 2 processes (gloo collectives) x 4 fake CPU devices."""
    env = {
        **os.environ,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
    }
    address = f"localhost:{free_port()}"
    flags = [f"--config.train.{key}={value}" for key, value in OVERRIDES.items()]
    logs = [tmp_path / f"process{index}.log" for index in range(2)]
    with contextlib.ExitStack() as stack:
        processes = [
            subprocess.Popen(
                [sys.executable, "launch.py", "--config=experiments/shapes.py:tiny"]
                + [f"--workdir={tmp_path / 'two'}", *flags, "--config.eval.num_examples=40"]
                + ["--distributed", f"--coordinator_address={address}", "--num_processes=2"]
                + [f"--process_id={index}"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stack.enter_context(open(log, "w")),
            )
            for index, log in enumerate(logs)
        ]
        for process, log in zip(processes, logs):
            assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    log = logs[0]
    assert "Data parallel over 8 cpu device(s) in 2 process(es)" in log.read_text()
    assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1  # process 0 only

    config = shapes.get_config("tiny")
    config.train.update(OVERRIDES)
    config.eval.num_examples = 40
    train.train_and_evaluate(config, tmp_path / "one")
    two, one = read_metrics(tmp_path / "two"), read_metrics(tmp_path / "one")
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for name in ["loss", "grad_norm", "validation/elbo"]:
        curve_two = [r[name] for r in two if name in r]
        curve_one = [r[name] for r in one if name in r]
        np.testing.assert_allclose(curve_two, curve_one, rtol=1e-5, err_msg=name)


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path):
    result = launch(tmp_path / "run", "--config.train.batch_size=12")
    assert result.returncode != 0
    assert (
        "train.batch_size=12 must be a multiple of the 8 devices it is split over" in result.stderr
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_pad_to_pads_with_zeros_and_masks_the_padding():
    batch = {"image": np.ones((3, 2, 2, 1), np.float32), "label": np.arange(3)}
    padded, mask = parallel.pad_to(batch, 8)
    assert padded["image"].shape == (8, 2, 2, 1) and padded["label"].tolist() == [0, 1, 2] + [0] * 5
    assert padded["image"][3:].sum() == 0
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0, 0, 0])


def test_vectorised_points_spread_over_eight_devices_train_as_each_alone_on_one(tmp_path):
    """Two points on 8 devices: a points axis of 2, each point's batch over 4 devices."""
    script = f"""
import sys
from absl import logging
from experiments import shapes
from vae_jax import train
logging.use_absl_handler()
logging.set_verbosity(logging.INFO)
configs = [shapes.get_config("tiny") for seed in (0, 1)]
for seed, config in enumerate(configs):
    config.train.update({OVERRIDES!r})
    config.update(seed=seed)
    config.eval.num_examples = 40
train.train_points(configs, [sys.argv[1] + "/point0", sys.argv[1] + "/point1"])
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        env=EIGHT_CPU_DEVICES,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 run(s) in one program, spread over 2 device group(s)" in result.stderr
    # Point 1 (devices 4-7 there) against a run alone on this process's one device; point 0
    # (devices 0-3) trains in the same program.
    config = shapes.get_config("tiny")
    config.train.update(OVERRIDES)
    config.update(seed=1)
    config.eval.num_examples = 40
    train.train_and_evaluate(config, tmp_path / "alone1")
    spread, alone = read_metrics(tmp_path / "point1"), read_metrics(tmp_path / "alone1")
    for name in ["loss", "elbo", "grad_norm", "validation/elbo"]:
        curve_spread = [r[name] for r in spread if name in r]
        curve_alone = [r[name] for r in alone if name in r]
        assert curve_alone
        np.testing.assert_allclose(curve_spread, curve_alone, rtol=1e-5, atol=1e-6)


def test_make_mesh_spreads_points_over_a_divisor_of_the_device_count():
    mesh = parallel.make_mesh(num_points=3)  # the tests see one device
    assert mesh.shape == {"points": 1, "data": 1}
