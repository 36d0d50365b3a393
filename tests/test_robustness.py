"""Training survives being killed: kill -9 at any moment loses at most the steps since the last
checkpoint, and SIGTERM / SIGINT (preemption) save a checkpoint at the current step and exit 0.

These run `launch.py` as a real subprocess (about 10 s of imports and compiling each), so they
are few: one kill -9 sequence, and one preemption per signal.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import shapes
from vae_jax import checkpoints, train
from vae_jax.writers import read_metrics

pytestmark = pytest.mark.slow  # every test here trains or starts processes

REPO = Path(__file__).resolve().parents[1]
# JAX writes compilation-cache entries in place: a process killed mid-write could leave a
# truncated entry for the next one, so these subprocesses compile for themselves.
WITHOUT_COMPILATION_CACHE = {
    name: value for name, value in os.environ.items() if name != "JAX_COMPILATION_CACHE_DIR"
}
SHORT_RUN = dict(num_steps=40, checkpoint_every=5, log_every=5, eval_every=40)
POLL_S = 0.01


def tiny_config(**train_overrides):
    config = shapes.get_config("tiny")
    config.train.update(train_overrides)
    return config


@pytest.fixture
def launch():
    """start(workdir, log_path, **train_overrides) -> Popen of `python launch.py` on the tiny
    shapes config, stdout and stderr into `log_path`. Whatever is still running at the end of
    the test (it failed half-way) is killed."""
    started = []

    def start(workdir: Path, log_path: Path, **train_overrides) -> subprocess.Popen:
        overrides = [f"--config.train.{key}={value}" for key, value in train_overrides.items()]
        command = [sys.executable, "launch.py", "--config=experiments/shapes.py:tiny"]
        with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [*command, f"--workdir={workdir}", *overrides],
                cwd=REPO,
                env=WITHOUT_COMPILATION_CACHE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:]


def checkpoint_steps(workdir: Path) -> list[int]:
    """Steps of the finished checkpoints: orbax writes into a tmp dir and renames it to <step>."""
    directory = workdir / checkpoints.CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def wait_until(condition, proc: subprocess.Popen, log_path: Path, timeout_s: float = 120.0):
    """Polls `condition` until it holds; fails if the process exits first or it times out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"launch.py exited with {proc.returncode} before the awaited moment:\n"
                + log_tail(log_path)
            )
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s} s for the awaited moment:\n" + log_tail(log_path))
        time.sleep(POLL_S)


def saved_state(workdir: Path, step: int) -> dict:
    """The train state checkpointed at `step` in `workdir`, as nested dicts of arrays."""
    manager = checkpoints.checkpoint_manager(workdir)
    try:
        return checkpoints.restore_arrays(manager, step)
    finally:
        manager.close()


def assert_trees_equal(expected, actual, what: str) -> None:
    expected_leaves, expected_def = jax.tree_util.tree_flatten_with_path(expected)
    actual_leaves, actual_def = jax.tree_util.tree_flatten_with_path(actual)
    assert expected_def == actual_def, f"{what}: tree structures differ"
    for (path, a), (_, b) in zip(expected_leaves, actual_leaves):
        np.testing.assert_array_equal(
            np.asarray(b), np.asarray(a), err_msg=f"{what}{jax.tree_util.keystr(path)}"
        )


def test_kill_9_at_random_moments_then_resume_matches_an_unbroken_run(tmp_path, launch):
    rng = np.random.default_rng(20240611)  # the kill moments are random but the same every run
    workdir = tmp_path / "killed"
    history = []  # what each kill hit, for failure messages

    def kill(proc: subprocess.Popen, log_path: Path, moment: str) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        entries = sorted(p.name for p in (workdir / checkpoints.CHECKPOINT_DIR).glob("*"))
        history.append(f"kill {len(history) + 1} {moment}: checkpoints/ held {entries}")
        # The run must still be alive when killed: a crash (say, on restoring a checkpoint that
        # an earlier kill left half-written) or a finished run would not test what we claim.
        assert proc.returncode == -signal.SIGKILL, (
            f"launch.py was not alive to be killed (exit {proc.returncode}); "
            f"{history}\n" + log_tail(log_path)
        )

    def kill_during_startup() -> None:
        """Kills within the imports, config.json, restore or compiling (5 to 10 s in all)."""
        log_path = tmp_path / f"kill{len(history) + 1}.log"
        proc = launch(workdir, log_path, **SHORT_RUN)
        delay = rng.uniform(0.5, 3.0)
        time.sleep(delay)
        kill(proc, log_path, f"{delay:.2f} s after start")

    def kill_after_a_checkpoint() -> None:
        """Kills soon after a random new checkpoint appears: often while the next one saves."""
        log_path = tmp_path / f"kill{len(history) + 1}.log"
        resumed_from = max(checkpoint_steps(workdir), default=0)
        target = resumed_from + SHORT_RUN["checkpoint_every"] * int(rng.integers(1, 4))
        assert target < SHORT_RUN["num_steps"], history  # leaves steps to train after the kill
        proc = launch(workdir, log_path, **SHORT_RUN)
        wait_until(lambda: max(checkpoint_steps(workdir), default=0) >= target, proc, log_path)
        delay = rng.uniform(0.0, 0.15)
        time.sleep(delay)
        kill(proc, log_path, f"{delay:.2f} s after checkpoint {target} (resumed at {resumed_from})")

    # The unbroken reference trains alongside the kills (saves a start on the clock).
    reference, reference_log = tmp_path / "unbroken", tmp_path / "unbroken.log"
    reference_proc = launch(reference, reference_log, **SHORT_RUN)

    kill_during_startup()  # a fresh run
    kill_after_a_checkpoint()
    kill_during_startup()  # a resumed run
    kill_after_a_checkpoint()

    # Trained to the end in this process (no imports to pay for).
    num_steps = SHORT_RUN["num_steps"]
    final = train.train_and_evaluate(tiny_config(**SHORT_RUN), workdir)
    assert int(final.step) == num_steps, history
    assert max(checkpoint_steps(workdir)) == num_steps, (history, checkpoint_steps(workdir))
    # Steps redone after a resume replace their records: one record per logged step.
    logged = [r["step"] for r in read_metrics(workdir) if "loss" in r]
    assert logged == list(range(5, num_steps + 1, 5)), (history, logged)
    # Saves are atomic, so no resume had a damaged checkpoint to fall back from and set aside.
    damaged = workdir / checkpoints.DAMAGED_DIR
    assert not damaged.exists(), (history, sorted(p.name for p in damaged.iterdir()))

    reference_proc.wait(timeout=300)
    assert reference_proc.returncode == 0, log_tail(reference_log)
    expected, actual = saved_state(reference, num_steps), saved_state(workdir, num_steps)
    assert_trees_equal(expected, actual, f"state after {history}: ")


PREEMPTED_RUN = dict(num_steps=100_000, checkpoint_every=10_000, log_every=2, eval_every=10_000)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_checkpoints_the_current_step_and_exits_0(tmp_path, launch, signum):
    workdir, log_path = tmp_path / "run", tmp_path / "launch.log"
    proc = launch(workdir, log_path, **PREEMPTED_RUN)
    metrics_path = workdir / "metrics.jsonl"
    wait_until(lambda: metrics_path.is_file() and metrics_path.stat().st_size > 0, proc, log_path)
    proc.send_signal(signum)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 60 s after {signum.name}:\n" + log_tail(log_path))
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode} on {signum.name}:\n" + log[-3000:]

    steps = checkpoint_steps(workdir)
    assert len(steps) == 1, f"checkpoints {steps} after {signum.name}:\n" + log[-3000:]
    saved = steps[0]
    assert saved > 0 and saved % PREEMPTED_RUN["checkpoint_every"] != 0, steps
    last_logged = max(r["step"] for r in read_metrics(workdir) if "loss" in r)
    # The step reached when the signal came: not an older one, nor one trained after it.
    assert last_logged <= saved <= last_logged + PREEMPTED_RUN["log_every"], (saved, last_logged)
    assert int(saved_state(workdir, saved)["step"]) == saved
    said = [line for line in log.splitlines() if "checkpoint" in line.lower()]
    assert any(re.search(rf"\b{saved}\b", line) for line in said), (
        f"no log line mentions the checkpoint at step {saved}: {said}"
    )

    if signum != signal.SIGTERM:
        return  # resuming is the same for either signal: pay for it once
    # The preempted run resumes from that checkpoint and trains on.
    resumed = train.train_and_evaluate(
        tiny_config(**{**PREEMPTED_RUN, "num_steps": saved + 4}), workdir
    )
    assert int(resumed.step) == saved + 4
    assert saved + 4 in checkpoint_steps(workdir)
