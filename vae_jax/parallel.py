"""Data parallelism on any number of devices and processes with `jax.sharding`.

A Mesh over every device with two axes, "points" and "data": a group of vectorised sweep points
is spread over the points axis, each point's batch is split over the data axis, and a single
`jax.jit` step runs on all of it (XLA inserts the gradient all-reduce). One run has a points axis
of one: its parameters and optimizer state are replicated. One CPU, eight GPUs and a TPU pod run
the same code; with several processes (multi-host) each feeds the rows of its own devices.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vae_jax.config import ConfigError
from vae_jax.data.types import Batch

POINTS_AXIS, DATA_AXIS = "points", "data"


def make_mesh(num_points: int = 1) -> Mesh:
    """A ("points", "data") Mesh over every device of every process for a group of num_points
    vectorised points: the points axis has gcd(num_points, device count) devices (all points on
    all devices when the counts share no factor), the data axis the rest. With several processes
    the points axis is 1: each process feeds its share of every point's batch
    (put_process_batch), which a points axis across processes would not match."""
    devices = np.asarray(jax.devices())
    points = math.gcd(num_points, devices.size) if jax.process_count() == 1 else 1
    return Mesh(devices.reshape(points, -1), (POINTS_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimizer state, keys, metrics)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def points_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (points) axis split over the points axis: a group's stacked train states, keys
    and weights."""
    return NamedSharding(mesh, PartitionSpec(POINTS_AXIS))


def points_batch_sharded(mesh: Mesh) -> NamedSharding:
    """Training batches [P, B, ...] of P sweep points: the points over the points axis, each
    point's batch over the data axis."""
    return NamedSharding(mesh, PartitionSpec(POINTS_AXIS, DATA_AXIS))


def check_divisible(key: str, batch_size: int, mesh: Mesh) -> None:
    """Raises ConfigError naming `key` unless batch_size splits evenly over the mesh's data
    axis."""
    count = mesh.shape[DATA_AXIS]
    if batch_size % count:
        raise ConfigError(
            f"{key}={batch_size} must be a multiple of the {count} devices it is split over "
            f"({mesh.devices.flat[0].platform} devices over {jax.process_count()} process(es)); "
            f"e.g. {key}={max(1, round(batch_size / count)) * count}"
        )


def put_process_batch(batch: Batch, mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows of the training batches of P points [P, B / process_count, ...] ->
    global arrays [P, B, ...] split over the mesh's points (P) and data (B) axes.

    Starts the host-to-device copies and returns without waiting for them."""
    sharding = points_batch_sharded(mesh)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in batch.items()
    }


def put_global_batch(batch: Batch, mesh: Mesh) -> dict[str, jax.Array]:
    """A batch that every process holds whole [B, ...] -> global arrays split over the mesh."""
    sharding = batch_sharded(mesh)
    return {
        name: jax.make_array_from_callback(value.shape, sharding, lambda index, v=value: v[index])
        for name, value in batch.items()
    }


def prefetch_to_mesh(batches: Iterator[Batch], mesh: Mesh, size: int = 2) -> Iterator[dict]:
    """Yields put_process_batch of each batch, keeping `size` batches in flight on the devices, so
    the next batch is copied while the current step runs."""
    queue = collections.deque()
    for batch in batches:
        queue.append(put_process_batch(batch, mesh))
        if len(queue) > size:
            yield queue.popleft()
    yield from queue


def pad_to(batch: Batch, batch_size: int) -> tuple[Batch, np.ndarray]:
    """Zero-pads every array of a (last, smaller) batch to `batch_size` rows.

    Returns (padded batch, mask [batch_size] float32: 1 for real rows, 0 for padding)."""
    count = len(next(iter(batch.values())))
    padded = {
        name: np.pad(value, [(0, batch_size - count)] + [(0, 0)] * (value.ndim - 1))
        for name, value in batch.items()
    }
    return padded, (np.arange(batch_size) < count).astype(np.float32)


def wait_for_all_processes(name: str) -> None:
    """A barrier across processes (nothing to wait for with one), e.g. after process 0 changed
    files that the others read next."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def is_main_process() -> bool:
    """Only process 0 writes logs, metrics, figures and config files."""
    return jax.process_index() == 0
