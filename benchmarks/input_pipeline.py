"""Input-pipeline throughput on the CPU: the CelebA pipeline (decode, center crop 148, antialiased
resize to 64, flip, batch) over a folder of 218x178 JPEGs, without and with dataset.cache (timed
after the first epoch has filled the cache), and the shapes renderer's host batches.

    python benchmarks/input_pipeline.py [--num_images=10000] [--batch_size=64]

Prints one JSON line per pipeline: median images/s over timed runs, after a warm-up.
"""

import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

from experiments import celeba, shapes
from vae_jax import data

flags.DEFINE_integer(
    "num_images", 10_000, "JPEGs in the generated CelebA-sized folder (one epoch of the cache)."
)
flags.DEFINE_integer("batch_size", 64, "Batch size of both pipelines.")
flags.DEFINE_integer("batches_per_run", 30, "Batches pulled per timed run.")
flags.DEFINE_integer("runs", 5, "Timed runs; the median is reported.")
FLAGS = flags.FLAGS


def write_face_sized_jpegs(folder: Path, count: int) -> None:
    """Smooth random 218x178 RGB JPEGs (quality 90): they decode like photos, unlike white noise."""
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (14, 12, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((178, 218), Image.BILINEAR)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def images_per_second(batches, batch_size: int) -> float:
    """Median images/s over FLAGS.runs runs of FLAGS.batches_per_run batches."""

    def one_run() -> float:
        start = time.perf_counter()
        for _ in itertools.islice(batches, FLAGS.batches_per_run):
            pass
        return FLAGS.batches_per_run * batch_size / (time.perf_counter() - start)

    # Warm-up: tf.data start-up, shapes' one-off split and compile, a full epoch into the cache.
    for _ in itertools.islice(batches, FLAGS.num_images // batch_size + 1):
        pass
    return statistics.median(one_run() for _ in range(FLAGS.runs))


def report(pipeline: str, config) -> None:
    """Prints the images/s of the training pipeline of `config` as one JSON line."""
    config.train.batch_size = FLAGS.batch_size
    rate = images_per_second(data.train_batches(config), FLAGS.batch_size)
    record = {"pipeline": pipeline, "batch_size": FLAGS.batch_size, "images_per_s": round(rate)}
    print(json.dumps(record))


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as folder:
        write_face_sized_jpegs(Path(folder), FLAGS.num_images)
        config = celeba.get_config()
        config.dataset.update(name="image_folder", path=folder)
        report("celeb_a (image_folder of 218x178 JPEG, center148 -> 64, flip)", config)
        config.dataset.cache = True
        report("celeb_a, dataset.cache=True, after the first epoch", config)
    report("shapes (train_batches: rendered by XLA, copied to the host)", shapes.get_config())


if __name__ == "__main__":
    app.run(main)
