"""Throughput of the FID Inception network (vae_jax.fid) on this machine: pool3 features per
second of 8-bit images, resize included, as --mode=analyze computes them.

    python benchmarks/fid_throughput.py                       # 64x64 RGB, batch 64
    python benchmarks/fid_throughput.py --image_size=32 --batch_size=256

Needs the weights (python -m vae_jax.fid fetch). Prints one JSON line: the first call's seconds
(it compiles), the median seconds per batch over --repeats calls, images/s, peak RSS.
"""

import json
import resource
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from vae_jax import fid, parallel

flags.DEFINE_integer("image_size", 64, "Height and width of the input images.")
flags.DEFINE_integer("batch_size", 64, "Images per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls after the first.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    mesh = parallel.make_mesh()
    params = fid.load_params()
    feature_fn = fid.make_feature_fn(mesh)
    size = FLAGS.image_size
    images = np.random.default_rng(0).integers(0, 256, (FLAGS.batch_size, size, size, 3))
    placed = parallel.put_global_batch({"image": images.astype(np.uint8)}, mesh)["image"]

    def timed_call() -> float:
        start = time.perf_counter()
        jax.block_until_ready(feature_fn(params, placed))
        return time.perf_counter() - start

    first_seconds = timed_call()
    seconds = statistics.median(timed_call() for _ in range(FLAGS.repeats))
    print(
        json.dumps(
            {
                "benchmark": "fid_throughput",
                "device_kind": jax.devices()[0].device_kind,
                "devices": jax.device_count(),
                "image_size": size,
                "batch_size": FLAGS.batch_size,
                "first_call_seconds": round(first_seconds, 2),
                "seconds": round(seconds, 3),
                "images_per_s": round(FLAGS.batch_size / seconds, 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
