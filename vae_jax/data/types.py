"""Names every data source shares; free of TensorFlow, so the built-in shapes data and the
model code import without it."""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]


class DataNotFoundError(FileNotFoundError):
    """A dataset that must be placed on disk by the user is missing; the message says how."""
