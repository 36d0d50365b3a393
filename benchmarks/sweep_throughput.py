"""Training throughput of P vectorised sweep points (train.make_train_step over a points axis)
against the same points one after another.

    python benchmarks/sweep_throughput.py                          # shapes, P = 1, 4, 16, 64
    python benchmarks/sweep_throughput.py --points=1,4 --steps=5

The points differ in β and seed (as a β × seed sweep does); each gets its own synthetic batch,
already on the devices, so the step alone is timed. One point trained after another gives the
images/s of P = 1 whatever the number of points, so `speedup` is images/s over P = 1's.
Prints one JSON line per P: compile seconds, median ms per step (over --repeats groups of
--steps steps after one untimed step) and images/s over all points.
"""

import json
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vae_jax import data, optim, parallel, train
from vae_jax.config import apply_overrides
from vae_jax.models import make_model

config_flags.DEFINE_config_file("config", "experiments/shapes.py", "Experiment config file.")
flags.DEFINE_list("points", ["1", "4", "16", "64"], "Numbers of vectorised points to time.")
flags.DEFINE_integer("steps", 5, "Steps per timed group.")
flags.DEFINE_integer("repeats", 3, "Timed groups; the median group gives ms per step.")
FLAGS = flags.FLAGS


def time_points(config, num_points: int, mesh) -> dict:
    """Compile and step times of `num_points` points of `config` with β and seed varied."""
    configs = [
        apply_overrides(config, {"objective.beta": 1.0 + i % 6, "seed": i})
        for i in range(num_points)
    ]
    image_shape = data.image_shape(config.dataset)
    model = make_model(config.model, image_shape, config.train.compute_dtype)
    optimizer = optim.make_optimizer(config.train)
    kind = config.objective.kind
    states = [
        train.create_train_state(model, optimizer, image_shape, jax.random.key(c.seed), mesh, kind)
        for c in configs
    ]
    state = train.stack_points(states)
    keys = train.stack_points([jax.random.key(c.seed) for c in configs])
    lr = config.train.learning_rate
    weights = train.stack_points([train.point_weights(c, lr) for c in configs])
    rng = np.random.default_rng(0)
    rows = data.process_batch_size(config.train.batch_size)
    images = (rng.random((num_points, rows, *image_shape)) < 0.5).astype(np.float32)
    batch = parallel.put_process_batch({"image": images}, mesh)
    start = time.perf_counter()
    step = train.make_train_step(model, optimizer, config, mesh)
    step = step.lower(state, batch, keys, weights).compile()
    compile_seconds = time.perf_counter() - start
    state, metrics = step(state, batch, keys, weights)
    jax.block_until_ready(metrics)
    seconds_per_step = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            state, metrics = step(state, batch, keys, weights)
        jax.block_until_ready(metrics)
        seconds_per_step.append((time.perf_counter() - start) / FLAGS.steps)
    seconds = statistics.median(seconds_per_step)
    return {
        "points": num_points,
        "compile_seconds": round(compile_seconds, 2),
        "ms_per_step": round(1000 * seconds, 2),
        "images_per_s": round(num_points * config.train.batch_size / seconds, 1),
    }


def main(argv):
    del argv
    config = FLAGS.config
    mesh = parallel.make_mesh()
    one_point = None
    for num_points in map(int, FLAGS.points):
        result = time_points(config, num_points, mesh)
        if num_points == 1:
            one_point = result["images_per_s"]
        result["speedup"] = round(result["images_per_s"] / one_point, 2) if one_point else None
        record = {
            "benchmark": "sweep_throughput",
            "config": config_flags.get_config_filename(FLAGS["config"]),
            "device_kind": jax.devices()[0].device_kind,
            "device_count": jax.device_count(),
            "batch_size": config.train.batch_size,
            **result,
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
