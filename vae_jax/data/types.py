"""Names every data source shares; free of TensorFlow, so the built-in shapes data and the
model code import without it."""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]

# Every dataset has these three. Where the source has no validation split (MNIST, CIFAR-10, image
# folders, shapes, ...) a fixed part of its training data is set aside as validation and never
# trained on; each source's module states its rule.
SPLITS = ("train", "validation", "test")


class DataNotFoundError(FileNotFoundError):
    """A dataset that must be placed on disk by the user is missing; the message says how."""


def check_split(split: str) -> None:
    """Raises ValueError naming the splits there are unless `split` is one of SPLITS."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of: {', '.join(SPLITS)}")
