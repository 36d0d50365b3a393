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

import functools
import itertools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
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
# Training draws use key(seed) folded with this, a stream apart from the model's keys.
DATA_STREAM = 0x5EED

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


def _shape_frame(scale, cos, sin, pos_x, pos_y):
    """Pixel centres in each shape's own frame: per-image scale, cos and sin of the angle and
    the shape's centre in pixels, each [N, 1, 1] -> (u, v), each [N, 64, 64].

    u points along the shape's rotated x axis and v along its rotated y axis (image y is
    down), both in units of the half-size, so the unrotated shape lives in about [−1, 1]².
    Arithmetic operators only, on numpy or jax arrays alike: float32 +, −, ×, ÷ round the same
    way in both, so the two renderers agree pixel for pixel.
    """
    dx = _PIXEL_CENTRES[None, None, :] - pos_x  # [N, 1, 64]
    dy = _PIXEL_CENTRES[None, :, None] - pos_y  # [N, 64, 1]
    cos, sin = cos / (HALF_SIZE * scale), sin / (HALF_SIZE * scale)
    # Rotating the pixels by −θ is the same as rotating the shape by +θ.
    return cos * dx + sin * dy, cos * dy - sin * dx


def _inside_square(u, v):
    """max(|u|, |v|) ≤ 1."""
    return (abs(u) <= 1.0) & (abs(v) <= 1.0)


def _inside_ellipse(u, v):
    """u² + (v / b)² ≤ 1 with b = ELLIPSE_MINOR."""
    w = v / ELLIPSE_MINOR
    return u * u + w * w <= 1.0


def _inside_heart(u, v):
    """(x² + y² − 1)³ − x²y³ ≤ 0, with the point at the bottom of the image (y up, v down)."""
    x = HEART_HALF_WIDTH * u
    y = HEART_Y_CENTRE - HEART_HALF_WIDTH * v
    x2, y2 = x * x, y * y
    r = x2 + y2 - 1.0
    return r * r * r <= x2 * y2 * y  # products, not `** 3`: float powf is ~30x slower


_INSIDE = (_inside_square, _inside_ellipse, _inside_heart)
# Each orientation's cos and sin, and each position's centre in pixels, looked up rather than
# computed: numpy's and XLA's cos differ in the last bit, and XLA may fuse a * b + c into one
# rounding.
_COS, _SIN = np.cos(ANGLES), np.sin(ANGLES)
_CENTRES = MARGIN + (IMAGE_SHAPE[0] - 2.0 * MARGIN) * POSITIONS


def _pose(indices, xp=np) -> tuple:
    """Factor indices [N, 5] -> scale, cos, sin, centre x and y in pixels, each [N, 1, 1]; xp is
    numpy for numpy indices, jax.numpy for jax (traced) ones."""
    tables = (SCALES, _COS, _SIN, _CENTRES, _CENTRES)
    columns = (1, 2, 2, 3, 4)
    return tuple(
        xp.asarray(table)[indices[:, c]][:, None, None] for table, c in zip(tables, columns)
    )


def render(indices: np.ndarray) -> np.ndarray:
    """Factor indices [N, 5] -> images [N, 64, 64, 1] float32 in {0, 1}, on the host."""
    indices = np.asarray(indices)
    images = np.zeros((len(indices),) + IMAGE_SHAPE, np.float32)
    for shape_id, inside in enumerate(_INSIDE):  # three shapes, each vectorised over its images
        rows = indices[:, 0] == shape_id
        if rows.any():
            images[rows, :, :, 0] = inside(*_shape_frame(*_pose(indices[rows])))
    return images


def render_jax(indices: jax.Array) -> jax.Array:
    """Factor indices [N, 5] int -> images [N, 64, 64, 1] float32 in {0, 1}, traceable (jit,
    vmap), computed where the array lives: the same pixels as `render` on XLA:CPU (all 737,280
    images checked; a GPU or TPU that contracts a * b + c differently may flip a pixel on a
    shape's edge)."""
    u, v = _shape_frame(*_pose(indices, jnp))
    shape = indices[:, 0, None, None]
    inside = jnp.where(
        shape == 0,
        _inside_square(u, v),
        jnp.where(shape == 1, _inside_ellipse(u, v), _inside_heart(u, v)),
    )
    return inside.astype(jnp.float32)[..., None]


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


def train_factors(
    seed: jax.Array, step: jax.Array, train_indices: jax.Array, batch_size: int
) -> jax.Array:
    """The factors of training batch `step` of run `seed`, traceable (jit, vmap over seeds):
    batch_size images drawn uniformly, with replacement, from train_indices [N_train] (the flat
    indices of the train split) -> factor indices [B, 5] int32.

    The draw's key is fold_in(fold_in(key(seed), DATA_STREAM), step): batch t depends only on
    (seed, t), so a resumed run sees exactly the batches of a straight one, and it is
    independent of the model's keys split from key(seed).
    """
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DATA_STREAM), step)
    rows = jax.random.randint(key, (batch_size,), 0, train_indices.shape[0])
    factors = jnp.stack(jnp.unravel_index(train_indices[rows], FACTOR_SIZES), axis=-1)
    return factors.astype(jnp.int32)


def train_batches(
    seed: int,
    batch_size: int,
    start_step: int = 0,
    process: tuple[int, int] = (0, 1),
) -> Iterator[dict[str, np.ndarray]]:
    """Training batches of steps start_step, start_step + 1, ... on the host: endless numpy
    batches {"image": [B', 64, 64, 1] float32, "factors": [B', 5] int32} of train_factors, from
    the train split (never from validation or test). With process=(index, count) only that
    process's contiguous block of batch_size / count rows is kept: the processes together yield
    the same global batch as one process. Training renders on the device instead
    (device_train_batches); these are the same batches, for analysis and tests.
    """
    index, count = process
    train = jnp.asarray(splits(SPLIT_SEED)["train"], jnp.int32)

    @jax.jit
    def batch_fn(step: jax.Array) -> dict[str, jax.Array]:
        factors = train_factors(seed, step, train, batch_size)
        return {"image": render_jax(factors), "factors": factors}

    for step in itertools.count(start_step):
        full = jax.device_get(batch_fn(np.int32(step)))
        yield {
            name: value.reshape(count, -1, *value.shape[1:])[index] for name, value in full.items()
        }


def device_train_batches(
    seeds: list[int], batch_size: int, start_step: int, sharding: jax.sharding.NamedSharding
) -> Iterator[dict[str, jax.Array]]:
    """The training images of P runs (one per seed), step after step from start_step:
    {"image": [P, B, 64, 64, 1]}, the images of train_factors of each seed, rendered by one
    jitted call into `sharding` (of the points and batch axes over its mesh): each device
    renders the rows it trains on, and no work per image is left on the host (P=16 at batch 64:
    about 200,000 images/s on 2 CPU cores)."""
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    train = _replicate(splits(SPLIT_SEED)["train"].astype(np.int32), replicated)
    seeds = _replicate(np.asarray(seeds, np.uint32), replicated)

    @functools.partial(jax.jit, out_shardings=sharding)
    def images(seeds: jax.Array, step: jax.Array, train: jax.Array) -> jax.Array:
        per_seed = jax.vmap(train_factors, in_axes=(0, None, None, None))
        factors = per_seed(seeds, step, train, batch_size)  # [P, B, 5]
        images = render_jax(factors.reshape(-1, len(FACTOR_SIZES)))  # one batch: vmap is slower
        return images.reshape(factors.shape[:2] + IMAGE_SHAPE)

    for step in itertools.count(start_step):
        yield {"image": images(seeds, np.int32(step), train)}


def _replicate(value: np.ndarray, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """A host array that every process holds whole -> a global array with `sharding`."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


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
