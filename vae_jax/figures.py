"""Image grids as PNG files: reconstructions (inputs above reconstructions) and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GRID_LINE = 2  # pixels of grey between images
GRID_GREY = 0.5


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tiles images [N, H, W, C] in [0, 1] into rows of `columns`, separated by grey lines.

    Returns [rows·(H+g)+g, columns·(W+g)+g, C] float32 in [0, 1].
    """
    n, height, width, channels = images.shape
    rows = -(-n // columns)
    step_y, step_x = height + GRID_LINE, width + GRID_LINE
    grid = np.full(
        (rows * step_y + GRID_LINE, columns * step_x + GRID_LINE, channels), GRID_GREY, np.float32
    )
    for i, image in enumerate(np.clip(images, 0.0, 1.0)):
        top, left = GRID_LINE + (i // columns) * step_y, GRID_LINE + (i % columns) * step_x
        grid[top : top + height, left : left + width] = image
    return grid


def reconstruction_grid(
    inputs: np.ndarray, reconstructions: np.ndarray, columns: int = 8
) -> np.ndarray:
    """Rows of inputs [N, H, W, C], each followed by the row of their reconstructions."""
    pairs = []
    for start in range(0, len(inputs), columns):
        pairs += [inputs[start : start + columns], reconstructions[start : start + columns]]
    padded = [
        np.concatenate([row, np.ones((columns - len(row),) + row.shape[1:], row.dtype)])
        for row in pairs
    ]
    return image_grid(np.concatenate(padded), columns)


def save_png(grid: np.ndarray, path: str | Path, scale: int = 2) -> Path:
    """Writes a [H, W, C] image in [0, 1] as an 8-bit PNG, upscaled `scale` times (nearest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.rint(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
    return path
