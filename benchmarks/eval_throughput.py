"""Throughput of the IWAE-K evaluation of `--mode=analyze` (likelihood.iwae_nll) on this machine.

    python benchmarks/eval_throughput.py --config=experiments/celeba.py
    python benchmarks/eval_throughput.py --config=experiments/shapes.py --iwae_samples=100

A freshly initialised model of the experiment bounds random images with K = --iwae_samples
importance samples, config.eval.iwae_chunk at a time, in calls of likelihood.IWAE_IMAGES_PER_CALL
decoded images as --mode=analyze makes them. Prints one JSON line: the first call's seconds (it
compiles), the median seconds per call over --repeats calls, images/s and decoded samples/s
(images x K), and peak RSS.
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
from vae_jax import data
from vae_jax.evaluation import likelihood
from vae_jax.models import make_model

config_flags.DEFINE_config_file("config", "experiments/shapes.py", "Experiment config file.")
flags.DEFINE_integer("iwae_samples", None, "K (default: the config's eval.iwae_samples).")
flags.DEFINE_integer("repeats", 3, "Timed calls after the first.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = FLAGS.config
    if FLAGS.iwae_samples is not None:
        config.eval.iwae_samples = FLAGS.iwae_samples
    config_lib.validate(config)
    image_shape = data.image_shape(config.dataset)
    model = make_model(config.model, image_shape)
    key = jax.random.key(config.seed)
    params = jax.jit(model.init)(key, np.zeros((1,) + image_shape, np.float32), key)
    num_images = max(1, likelihood.IWAE_IMAGES_PER_CALL // config.eval.iwae_chunk)
    images = np.random.default_rng(0).integers(0, 256, (num_images,) + image_shape) / 255
    images = images.astype(np.float32)
    terms_fn = likelihood.make_log_weight_terms_fn(model)
    k, chunk = config.eval.iwae_samples, config.eval.iwae_chunk

    def timed_call() -> float:
        start = time.perf_counter()
        likelihood.iwae_bound_chunked(terms_fn, params, images, key, k, chunk)  # numpy
        return time.perf_counter() - start

    first_seconds = timed_call()
    seconds = statistics.median(timed_call() for _ in range(FLAGS.repeats))
    print(
        json.dumps(
            {
                "benchmark": "eval_throughput",
                "config": config_flags.get_config_filename(FLAGS["config"]),
                "device_kind": jax.devices()[0].device_kind,
                "iwae_samples": config.eval.iwae_samples,
                "iwae_chunk": config.eval.iwae_chunk,
                "images_per_call": num_images,
                "first_call_seconds": round(first_seconds, 2),
                "seconds": round(seconds, 3),
                "images_per_s": round(num_images / seconds, 1),
                "decoded_samples_per_s": round(num_images * k / seconds),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
