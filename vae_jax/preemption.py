"""Stopping a run cleanly: SIGTERM / SIGINT (preemption, Ctrl-C) with one process, JAX's
preemption sync point with several. The training loop asks `should_stop(step, requests)` after
each step, then checkpoints that step and raises StoppedBySignal."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import jax
from jax.experimental import multihost_utils


class StoppedBySignal(Exception):
    """SIGTERM / SIGINT (or a multi-host preemption notice) stopped training after a checkpoint
    at the current step: callers stop too (a sweep does not go on to its next point)."""


@contextlib.contextmanager
def stop_requests() -> Iterator[list[str]]:
    """Within the block SIGTERM and SIGINT do not interrupt: they append their name to the
    yielded list, which the loop checks after each step. The previous handlers come back after.

    A second signal of the same kind gets the previous handler (a second Ctrl-C interrupts).
    With several processes nothing is caught: SIGTERM is left to JAX's preemption sync manager
    (see should_stop), which agrees on one step for all processes to stop at, since a process
    stopping on its own would leave the others waiting in the step's collectives."""
    requests: list[str] = []
    signals = (signal.SIGTERM, signal.SIGINT) if jax.process_count() == 1 else ()
    previous = {number: signal.getsignal(number) for number in signals}

    def request_stop(number, frame):
        requests.append(signal.Signals(number).name)
        signal.signal(number, previous[number])

    for number in signals:
        signal.signal(number, request_stop)
    try:
        yield requests
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def should_stop(step: int, stop_requests: list[str]) -> bool:
    """Whether to checkpoint and stop after `step`: a signal arrived (one process), or every
    process reached the step that the preemption sync manager chose (several processes)."""
    if jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step):
        stop_requests.append("preemption notice")
    return bool(stop_requests)
