"""Procedural shapes: a dSprites-equivalent rendered on the fly, no download needed.

One white shape on black, 64x64x1, pixels exactly {0, 1}. Every image is a pure function
of its five factor indices:

    shape        3   square, ellipse, heart
    scale        6   linspace(0.5, 1.0)
    orientation 40   linspace(0, 2π), endpoint excluded
    pos_x       32   linspace(0, 1), left to right
    pos_y       32   linspace(0, 1), top to bottom

3·6·40·32·32 = 737,280 images, addressed by a flat index in row-major factor order.
A pixel is white when its centre lies inside the shape (no anti-aliasing). As in dSprites,
the square repeats every quarter turn and the ellipse every half turn.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
from collections.abc import Callable, Iterator

import numpy as np

from vae_jax.data.types import check_split

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
NUM_IMAGES = 737_280
IMAGE_SHAPE = (64, 64, 1)
NUM_TEST = 10_000
NUM_VALIDATION = 10_000
# The train/validation/test split is the same for every run, whatever its seed, so that runs with
# different seeds are selected and evaluated on the same images.
SPLIT_SEED = 0
# Training batches rendered ahead in parallel: one thread renders slower than an accelerator
# trains (README, Performance).
RENDER_THREADS = min(4, os.cpu_count() or 1)

SHAPE_NAMES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, FACTOR_SIZES[1], dtype=np.float32)
ANGLES = np.linspace(0.0, 2.0 * np.pi, FACTOR_SIZES[2], endpoint=False).astype(np.float32)
POSITIONS = np.linspace(0.0, 1.0, FACTOR_SIZES[3], dtype=np.float32)

HALF_SIZE = 10.0  # pixels from centre to a square's side at scale 1
MARGIN = 10.0  # the centre stays this far from the border, so shapes stay (nearly) inside
ELLIPSE_MINOR = 0.5  # semi-minor axis relative to the semi-major axis, elongated like dSprites
# The heart curve (x²+y²−1)³ = x²y³ spans x ∈ ±1.139, y ∈ [−1, 1.236]: shrink it uniformly
# by its half-width and centre it vertically so it fills about [−1, 1]².
HEART_HALF_WIDTH = 1.139
HEART_Y_CENTRE = 0.118

_PIXEL_CENTRES = np.arange(IMAGE_SHAPE[0], dtype=np.float32) + 0.5

assert np.prod(FACTOR_SIZES) == NUM_IMAGES


def factor_indices(flat_index: np.ndarray) -> np.ndarray:
    """Flat image indices [N] -> factor indices [N, 5], columns in FACTOR_NAMES order."""
    return np.stack(np.unravel_index(np.asarray(flat_index), FACTOR_SIZES), axis=-1)


def factor_values(indices: np.ndarray) -> np.ndarray:
    """Factor indices [N, 5] -> values [N, 5] float32: shape id, scale, angle (rad), x and y
    in [0, 1]."""
    indices = np.asarray(indices)
    return np.stack(
        [
            indices[:, 0].astype(np.float32),
            SCALES[indices[:, 1]],
            ANGLES[indices[:, 2]],
            POSITIONS[indices[:, 3]],
            POSITIONS[indices[:, 4]],
        ],
        axis=-1,
    )


def _shape_frame(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in each shape's own frame: values [N, 5] -> (u, v), each [N, 64, 64].

    u points along the shape's rotated x axis and v along its rotated y axis (image y is
    down), both in units of the half-size, so the unrotated shape lives in about [−1, 1]².
    """
    scale, angle, pos_x, pos_y = (values[:, k, None, None] for k in range(1, 5))
    span = IMAGE_SHAPE[0] - 2.0 * MARGIN
    dx = _PIXEL_CENTRES[None, None, :] - (MARGIN + span * pos_x)  # [N, 1, 64]
    dy = _PIXEL_CENTRES[None, :, None] - (MARGIN + span * pos_y)  # [N, 64, 1]
    cos, sin = np.cos(angle) / (HALF_SIZE * scale), np.sin(angle) / (HALF_SIZE * scale)
    # Rotating the pixels by −θ is the same as rotating the shape by +θ.
    return cos * dx + sin * dy, cos * dy - sin * dx


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """max(|u|, |v|) ≤ 1."""
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """u² + (v / b)² ≤ 1 with b = ELLIPSE_MINOR."""
    return u * u + (v / ELLIPSE_MINOR) ** 2 <= 1.0


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(x² + y² − 1)³ − x²y³ ≤ 0, with the point at the bottom of the image (y up, v down)."""
    x = HEART_HALF_WIDTH * u
    y = HEART_Y_CENTRE - HEART_HALF_WIDTH * v
    x2, y2 = x * x, y * y
    r = x2 + y2 - 1.0
    return r * r * r <= x2 * y2 * y  # products, not `** 3`: float powf is ~30x slower


_INSIDE: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _inside_square,
    _inside_ellipse,
    _inside_heart,
)


def render(indices: np.ndarray) -> np.ndarray:
    """Factor indices [N, 5] -> images [N, 64, 64, 1] float32 in {0, 1}."""
    indices = np.asarray(indices)
    values = factor_values(indices)
    images = np.zeros((len(indices),) + IMAGE_SHAPE, np.float32)
    for shape_id, inside in enumerate(_INSIDE):  # three shapes, each vectorised over its images
        rows = indices[:, 0] == shape_id
        if rows.any():
            images[rows, :, :, 0] = inside(*_shape_frame(values[rows]))
    return images


def splits(seed: int) -> dict[str, np.ndarray]:
    """Flat indices of each split, from one seeded permutation of all images: "test" its first
    NUM_TEST [NUM_TEST], "validation" the next NUM_VALIDATION [NUM_VALIDATION], "train" the rest
    [NUM_IMAGES − NUM_TEST − NUM_VALIDATION]."""
    order = np.random.default_rng(seed).permutation(NUM_IMAGES)
    return {
        "train": order[NUM_TEST + NUM_VALIDATION :],
        "validation": order[NUM_TEST : NUM_TEST + NUM_VALIDATION],
        "test": order[:NUM_TEST],
    }


def batch(flat_indices: np.ndarray) -> dict[str, np.ndarray]:
    """Flat indices [N] -> {"image": [N, 64, 64, 1] float32, "factors": [N, 5] int32}."""
    indices = factor_indices(flat_indices)
    return {"image": render(indices), "factors": indices.astype(np.int32)}


def train_batches(
    seed: int,
    batch_size: int,
    start_step: int = 0,
    process: tuple[int, int] = (0, 1),
) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches drawn uniformly (with replacement) from the train split (never from
    validation or test).

    Step t's batch depends only on (seed, t), so resuming at start_step=k yields exactly
    the batches a run from step 0 would have seen from its k-th batch onward. With
    process=(index, count) only that process's contiguous block of batch_size / count rows is
    rendered: the processes together yield the same global batch as one process. The next
    RENDER_THREADS batches render in a thread pool while the current one is used (numpy releases
    the GIL), so the renderer keeps up with an accelerator.
    """
    index, count = process
    train = splits(SPLIT_SEED)["train"]

    def render_step(step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, step])
        rows = rng.integers(0, len(train), size=batch_size).reshape(count, -1)[index]
        return batch(train[rows])

    with concurrent.futures.ThreadPoolExecutor(RENDER_THREADS) as pool:
        steps = itertools.count(start_step)
        ahead = (pool.submit(render_step, next(steps)) for _ in range(RENDER_THREADS))
        pending = collections.deque(ahead)
        while True:
            yield pending.popleft().result()
            pending.append(pool.submit(render_step, next(steps)))


def eval_batches(
    split: str, batch_size: int, num_examples: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """The `split` ("train", "validation" or "test") in order, its first num_examples (all of it
    if None); the last batch may be smaller. A bad split or num_examples fails here, not at the
    first batch."""
    check_split(split)
    indices = splits(SPLIT_SEED)[split]
    if num_examples is not None and not 0 < num_examples <= len(indices):
        raise ValueError(
            f"num_examples={num_examples} must be in 1..{len(indices)} (the size of the {split} "
            "split), or None for all of it"
        )
    indices = indices[:num_examples]
    return (
        batch(indices[start : start + batch_size]) for start in range(0, len(indices), batch_size)
    )
