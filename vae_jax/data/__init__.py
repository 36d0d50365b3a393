"""Input pipelines. Every source yields dicts of numpy arrays with "image": [B, H, W, C] float32
in [0, 1] (plus source-specific extras such as "factors"); training batches for step t depend
only on (config, t), so a resumed run sees the batches a straight run would have seen."""

from __future__ import annotations

from collections.abc import Iterator

import ml_collections
import numpy as np

from vae_jax.data import shapes

Batch = dict[str, np.ndarray]


class DataNotFoundError(FileNotFoundError):
    """A dataset that must be placed on disk by the user is missing; the message says how."""


def image_shape(dataset_config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(H, W, C) of the images the dataset yields."""
    if dataset_config.name == "shapes":
        return shapes.IMAGE_SHAPE
    size = dataset_config.image_size
    return (size, size, 3)


def train_batches(config: ml_collections.ConfigDict, start_step: int = 0) -> Iterator[Batch]:
    """Infinite training batches of config.train.batch_size, starting at step `start_step`."""
    if config.dataset.name == "shapes":
        return shapes.train_batches(config.seed, config.train.batch_size, start_step)
    raise _celeb_a_missing(config.dataset)


def eval_batches(config: ml_collections.ConfigDict) -> Iterator[Batch]:
    """One pass over the test split (the first config.eval.num_examples, if set)."""
    if config.dataset.name == "shapes":
        return shapes.test_batches(config.seed, config.eval.batch_size, config.eval.num_examples)
    raise _celeb_a_missing(config.dataset)


def _celeb_a_missing(dataset_config: ml_collections.ConfigDict) -> DataNotFoundError:
    return DataNotFoundError(
        f"CelebA data not found (dataset.data_dir={dataset_config.data_dir!r}) — see the README's "
        "Data section for where to put the CelebA files."
    )
