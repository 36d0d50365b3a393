"""Input-pipeline throughput of the procedural shapes dataset, on the CPU.

    python benchmarks/input_pipeline_shapes.py

Prints one JSON line: the median over timed runs of pulling batches from train_batches.
"""

import itertools
import json
import statistics
import time

from vae_jax.data import shapes

BATCH_SIZE = 64
WARMUP_BATCHES = 20
BATCHES_PER_RUN = 100
RUNS = 7


def seconds_per_batch(batches, num_batches: int) -> float:
    """Wall-clock seconds per batch for pulling num_batches from an iterator."""
    start = time.perf_counter()
    for _ in itertools.islice(batches, num_batches):
        pass
    return (time.perf_counter() - start) / num_batches


def main() -> None:
    batches = shapes.train_batches(seed=0, batch_size=BATCH_SIZE)
    seconds_per_batch(batches, WARMUP_BATCHES)  # also pays for the one-off split
    median = statistics.median(seconds_per_batch(batches, BATCHES_PER_RUN) for _ in range(RUNS))
    print(
        json.dumps(
            {
                "dataset": "shapes",
                "batch_size": BATCH_SIZE,
                "images_per_s": round(BATCH_SIZE / median),
                "ms_per_batch": round(1e3 * median, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
