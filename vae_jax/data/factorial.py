"""Full-factorial TFDS datasets (dSprites, 3D Shapes): their factors, and a table on disk that
holds every image at its flat row-major factor index, so the image for any factor combination
is one random read. TFDS stores the examples in its own shuffled order, so the table is written
once from a full pass over them. Free of TensorFlow: the caller supplies the examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# The TFDS label features that make a batch's "factors" columns, in order. dSprites' constant
# colour factor is not a TFDS feature.
FACTOR_FEATURES: dict[str, tuple[str, ...]] = {
    "dsprites": (
        "label_shape",
        "label_scale",
        "label_orientation",
        "label_x_position",
        "label_y_position",
    ),
    "shapes3d": (
        "label_floor_hue",
        "label_wall_hue",
        "label_object_hue",
        "label_scale",
        "label_shape",
        "label_orientation",
    ),
}
FACTOR_SIZES: dict[str, tuple[int, ...]] = {
    "dsprites": (3, 6, 40, 32, 32),
    "shapes3d": (10, 10, 10, 8, 4, 15),
}


def flat_indices(factors: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Factor indices [N, F] -> flat row-major indices [N] into the prod(sizes) combinations
    (ValueError for an index out of range)."""
    return np.ravel_multi_index(tuple(np.asarray(factors).T), sizes)


def write_table(
    path: Path,
    examples: Iterable[tuple[np.ndarray, np.ndarray]],
    sizes: tuple[int, ...],
    binary: bool,
) -> None:
    """Writes the .npy table of every image at its flat factor index.

    examples: chunks (factors [n, F], images [n, H, W, C] uint8) in any order, covering every
        factor combination exactly once together.
    binary:   images hold 0/1; the table holds them 8 to a byte, [prod(sizes), H·W·C / 8]
        (dSprites: 0.38 GB rather than 3 GB), else [prod(sizes), H, W, C].

    Raises ValueError, leaving nothing at `path`, when a combination is missing or repeated. The
    table appears at `path` only when complete, so a concurrent or interrupted run never reads a
    partial one.
    """
    num_combinations = int(np.prod(sizes))
    seen = np.zeros(num_combinations, bool)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = None
    try:
        for factors, images in examples:
            rows = flat_indices(factors, sizes)
            if seen[rows].any() or len(np.unique(rows)) < len(rows):
                raise ValueError(
                    f"{path}: a factor combination occurs twice; the data is not full-factorial"
                )
            seen[rows] = True
            images = _packed(images) if binary else images
            if table is None:
                shape = (num_combinations, *images.shape[1:])
                table = np.lib.format.open_memmap(partial, "w+", np.uint8, shape)
            table[rows] = images
        if not seen.all():
            raise ValueError(
                f"{path}: {num_combinations - seen.sum()} of the {num_combinations} factor "
                f"combinations of sizes {sizes} have no image; the data is not full-factorial"
            )
        table.flush()
        del table
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _packed(images: np.ndarray) -> np.ndarray:
    """0/1 images [n, H, W, C] -> [n, H·W·C / 8] uint8, 8 pixels a byte."""
    return np.packbits(images.reshape(len(images), -1) != 0, axis=1)


def read_table(
    table: np.ndarray,
    factors: np.ndarray,
    sizes: tuple[int, ...],
    image_shape: tuple[int, int, int],
    binary: bool,
) -> np.ndarray:
    """The images with factor indices [N, F] from a write_table table: uint8 [N, H, W, C] on the
    8-bit scale (a binary table's pixels as 0 / 255)."""
    rows = table[flat_indices(factors, sizes)]
    if not binary:
        return np.asarray(rows)
    bits = np.unpackbits(rows, axis=1, count=int(np.prod(image_shape)))
    return bits.reshape(len(rows), *image_shape) * np.uint8(255)
