"""Input pipelines. Every source yields dicts of numpy arrays with "image": [B, H, W, C] float32
in [0, 1] (plus source-specific extras: "factors" for shapes, "attributes" for CelebA, "label"
for labelled TFDS datasets). Training batches for step t depend only on (config, t), so a resumed
run sees the batches a straight run would have seen.

Sources: "shapes" (built in, procedural), "image_folder" (dataset.path), or any TFDS dataset name
("celeb_a", "mnist", "fashion_mnist", "binarized_mnist", "cifar10", ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import ml_collections

from vae_jax.data import image_folder, pipeline, shapes
from vae_jax.data import tfds as tfds_source
from vae_jax.data.pipeline import Batch, DataNotFoundError

__all__ = ["Batch", "DataNotFoundError", "eval_batches", "image_shape", "train_batches"]


def image_shape(dataset_config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(H, W, C) of the images the dataset yields."""
    if dataset_config.name == "shapes":
        return shapes.IMAGE_SHAPE
    size = dataset_config.image_size
    if dataset_config.name == "image_folder":
        return (size, size, 3)
    return (size, size, tfds_source.builder(dataset_config).info.features["image"].shape[-1])


def _source(dataset_config: ml_collections.ConfigDict, split: str) -> pipeline.Source:
    if dataset_config.name == "image_folder":
        return image_folder.load(dataset_config.path, split)
    return tfds_source.load(dataset_config, split)


def train_batches(config: ml_collections.ConfigDict, start_step: int = 0) -> Iterator[Batch]:
    """Infinite training batches of config.train.batch_size, starting at step `start_step`.

    Raises DataNotFoundError at once (not at the first batch) when the data is not on disk.
    """
    d = config.dataset
    if d.name == "shapes":
        return shapes.train_batches(config.seed, config.train.batch_size, start_step)
    source = _source(d, "train")
    return pipeline.train_batches(
        source.elements,
        source.num_examples,
        pipeline.preprocess_fn(d.crop, d.image_size, source.channels),
        seed=config.seed,
        batch_size=config.train.batch_size,
        start_step=start_step,
        shuffle_buffer=d.shuffle_buffer,
        cache=d.cache,
        flip=d.random_flip,
        dynamic_binarization=d.dynamic_binarization,
    )


class _Reiterable:
    """An iterable that starts a fresh pass each time it is iterated."""

    def __init__(self, make_iterator: Callable[[], Iterator[Batch]]):
        self._make_iterator = make_iterator

    def __iter__(self) -> Iterator[Batch]:
        return self._make_iterator()


def eval_batches(
    config: ml_collections.ConfigDict, split: str = "test", num_examples: int | None = -1
) -> Iterable[Batch]:
    """Ordered passes over the first `num_examples` of `split` (None: all of it; by default
    config.eval.num_examples). The files are listed once; each `iter()` is a new pass."""
    if num_examples == -1:
        num_examples = config.eval.num_examples
    d = config.dataset
    if d.name == "shapes":
        shapes.test_batches(
            config.eval.batch_size, num_examples
        )  # fails now if num_examples is bad
        return _Reiterable(lambda: shapes.test_batches(config.eval.batch_size, num_examples))
    source = _source(d, split)
    num_examples = min(source.num_examples, num_examples or source.num_examples)
    return pipeline.eval_batches(
        source.elements,
        num_examples,
        pipeline.preprocess_fn(d.crop, d.image_size, source.channels),
        seed=config.seed,
        batch_size=config.eval.batch_size,
        dynamic_binarization=d.dynamic_binarization,
    )
