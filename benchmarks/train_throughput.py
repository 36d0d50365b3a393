"""Training throughput of an experiment's jitted, data-parallel train step on this machine.

    python benchmarks/train_throughput.py --config=experiments/celeba.py
    python benchmarks/train_throughput.py --config=experiments/celeba.py --batch_size=144
    python benchmarks/train_throughput.py --config=experiments/celeba.py --compute_dtype=bfloat16
    python benchmarks/train_throughput.py --input=pipeline     # shapes, batches as in training

--input=synthetic (default) feeds one random batch already on the devices, so it times the XLA
step alone; --input=pipeline takes every batch from the training input (train.group_batches:
rendered on the devices for shapes, a tf.data pipeline copied ahead to the devices otherwise),
so the difference is the time spent outside the step.
Prints one JSON line: devices, compile seconds (state init and train step), XLA's FLOP count
of the step per image and the FLOP rate achieved, the median
milliseconds per step and images/s (median over --repeats groups of --steps steps, after
--warmup steps; each group is dispatched without waiting, as in training), and peak RSS.
"""

import json
import resource
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vae_jax import config as config_lib
from vae_jax import data, optim, parallel, train
from vae_jax.models import make_model

config_flags.DEFINE_config_file("config", "experiments/shapes.py", "Experiment config file.")
flags.DEFINE_integer("batch_size", None, "Global batch size (default: the config's).")
flags.DEFINE_enum("compute_dtype", None, ["float32", "bfloat16"], "Default: the config's.")
flags.DEFINE_integer("steps", 10, "Steps per timed group.")
flags.DEFINE_integer("repeats", 5, "Timed groups; the median group gives ms per step.")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compiling.")
flags.DEFINE_enum("input", "synthetic", ["synthetic", "pipeline"], "See the module docstring.")
FLAGS = flags.FLAGS


def synthetic_batches(batch_size: int, image_shape: tuple[int, int, int]):
    """The same random batch [batch_size, H, W, C] in [0, 1] on the 8-bit grid, forever."""
    images = np.random.default_rng(0).integers(0, 256, (batch_size,) + image_shape) / 255
    batch = {"image": images.astype(np.float32)}
    while True:
        yield batch


def main(argv):
    del argv
    config = FLAGS.config
    if FLAGS.batch_size is not None:
        config.train.batch_size = FLAGS.batch_size
    if FLAGS.compute_dtype is not None:
        config.train.compute_dtype = FLAGS.compute_dtype
    config_lib.validate(config)
    mesh = parallel.make_mesh()
    parallel.check_divisible("train.batch_size", config.train.batch_size, mesh)
    image_shape = data.image_shape(config.dataset)
    if FLAGS.input == "pipeline":
        inputs = train.group_batches([config], 0, mesh)
    else:
        local_rows = data.process_batch_size(config.train.batch_size)
        batches = synthetic_batches(local_rows, image_shape)
        inputs = parallel.prefetch_to_mesh(({"image": b["image"][None]} for b in batches), mesh)

    model = make_model(config.model, image_shape, config.train.compute_dtype)
    optimizer = optim.make_optimizer(config.train)
    key = jax.random.key(config.seed)
    start = time.perf_counter()
    state = jax.block_until_ready(
        train.create_train_state(model, optimizer, image_shape, key, mesh, config.objective.kind)
    )
    init_seconds = time.perf_counter() - start

    # One run is a group of one point: state, batch, key and weights get a points axis.
    weights = train.point_weights(config, config.train.learning_rate)
    state, key, weights = train.stack_points([(state, key, weights)])
    batch = next(inputs)
    start = time.perf_counter()
    step = train.make_train_step(model, optimizer, config, mesh)
    step = step.lower(state, batch, key, weights).compile()
    compile_seconds = time.perf_counter() - start
    flops_per_step = step.cost_analysis().get("flops", float("nan"))  # XLA's count for the step

    for _ in range(FLAGS.warmup):
        state, metrics = step(state, batch, key, weights)
    jax.block_until_ready(metrics)
    seconds_per_step = []
    for _ in range(FLAGS.repeats):  # as in training: dispatch runs ahead, one wait per group
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            if FLAGS.input == "pipeline":
                batch = next(inputs)
            state, metrics = step(state, batch, key, weights)
        jax.block_until_ready(metrics)
        seconds_per_step.append((time.perf_counter() - start) / FLAGS.steps)
    seconds = statistics.median(seconds_per_step)
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "config": config_flags.get_config_filename(FLAGS["config"]),
                "device_kind": jax.devices()[0].device_kind,
                "device_count": jax.device_count(),
                "process_count": jax.process_count(),
                "batch_size": config.train.batch_size,
                "compute_dtype": config.train.compute_dtype,
                "input": FLAGS.input,
                "init_seconds": round(init_seconds, 2),
                "compile_seconds": round(compile_seconds, 2),
                "ms_per_step": round(1000 * seconds, 2),
                "images_per_s": round(config.train.batch_size / seconds, 1),
                "mflop_per_image": round(flops_per_step / config.train.batch_size / 1e6, 1),
                "gflop_per_s": round(flops_per_step / seconds / 1e9, 1),
                "final_loss": round(float(metrics["loss"][0]), 2),
                "timed_steps": FLAGS.steps * FLAGS.repeats,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
