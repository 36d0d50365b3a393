"""Input pipelines. Every source yields dicts of numpy arrays with "image": [B, H, W, C] float32
in [0, 1] (plus source-specific extras: "factors" [B, F] int32 for shapes, dsprites and shapes3d,
"attributes" for CelebA, "label" for labelled TFDS datasets). Training batches for step t depend
only on (config, t), so a resumed run sees the batches a straight run would have seen.

Sources: "shapes" (built in, procedural), "image_folder" (dataset.path), or any TFDS dataset name
("celeb_a", "mnist", "fashion_mnist", "binarized_mnist", "cifar10", "dsprites", "shapes3d", ...).

Every source has the splits "train", "validation" and "test", and eval_batches serves exactly the
one asked for. Where the source has no validation split, a fixed part of its training data,
independent of config.seed, is validation and never trained on: shapes.splits,
image_folder.split_of and tfds.tfds_split state the rules.

With several processes (multi-host), each process yields its own rows of every training batch:
config.train.batch_size / jax.process_count() of them.

The on-disk sources run on tf.data. TensorFlow takes seconds to import, so it is imported when
an on-disk dataset is first used, not with this package: shapes runs, analysis of shapes runs and
the benchmarks never load it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np

from vae_jax.data import factorial, shapes
from vae_jax.data.types import SPLITS, Batch, DataNotFoundError, check_split

__all__ = [
    "SPLITS",
    "Batch",
    "DataNotFoundError",
    "eval_batches",
    "factor_sizes",
    "image_shape",
    "images_for_factors",
    "num_train_examples",
    "train_batches",
]


def image_shape(dataset_config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(H, W, C) of the images the dataset yields: C is dataset.channels when set (looking at
    nothing, importing no TensorFlow), else the data's own: the TFDS "image" feature's, or
    image_folder.detect_channels. Shapes images are always shapes.IMAGE_SHAPE."""
    if dataset_config.name == "shapes":
        return shapes.IMAGE_SHAPE
    size = dataset_config.image_size
    if dataset_config.channels is not None:
        return (size, size, dataset_config.channels)
    if dataset_config.name == "image_folder":
        from vae_jax.data import image_folder  # imports TensorFlow, see above

        return (size, size, image_folder.detect_channels(dataset_config.path))
    if reads_idx_files(dataset_config):
        return (size, size, 1)
    from vae_jax.data import tfds as tfds_source  # imports TensorFlow, see above

    return (size, size, tfds_source.channels(dataset_config, tfds_source.builder(dataset_config)))


def factor_sizes(dataset_config: ml_collections.ConfigDict) -> tuple[int, ...] | None:
    """How many values each ground-truth factor takes (in the order of a batch's "factors"
    columns), or None for a dataset without factors."""
    if dataset_config.name == "shapes":
        return shapes.FACTOR_SIZES
    return factorial.FACTOR_SIZES.get(dataset_config.name)


def images_for_factors(
    dataset_config: ml_collections.ConfigDict, factors: np.ndarray
) -> np.ndarray:
    """Factor indices [N, F] (column f in 0..factor_sizes[f]−1) -> the images with exactly those
    factors [N, H, W, C] float32 in [0, 1]: what the disentanglement scores that fix one factor
    and draw the others need. Shapes renders them; dsprites and shapes3d look them up in a table
    written once beside their TFDS data (tfds.factorial_table), in the evaluation preprocessing."""
    if dataset_config.name == "shapes":
        return shapes.render(factors)
    if dataset_config.name in factorial.FACTOR_SIZES:
        from vae_jax.data import tfds as tfds_source  # imports TensorFlow, see above

        return tfds_source.images_for_factors(dataset_config, factors)
    raise ValueError(
        f"dataset.name={dataset_config.name!r} has no ground-truth factors; datasets with "
        f"factors: shapes, {', '.join(factorial.FACTOR_SIZES)}"
    )


def num_train_examples(dataset_config: ml_collections.ConfigDict) -> int:
    """The size N of the train split (the aggregate posterior's N in the TC estimators)."""
    if dataset_config.name == "shapes":
        return len(shapes.splits(shapes.SPLIT_SEED)["train"])
    return _source(dataset_config, "train").num_examples


IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist")  # also read from idx files (idx.py)


def reads_idx_files(dataset_config: ml_collections.ConfigDict) -> bool:
    """Whether the dataset comes from a folder of idx files: an MNIST-format dataset with
    dataset.path set."""
    return dataset_config.name in IDX_DATASETS and dataset_config.path is not None


def _source(dataset_config: ml_collections.ConfigDict, split: str):
    """The on-disk split as a pipeline.Source (imports TensorFlow, see above)."""
    from vae_jax.data import idx, image_folder
    from vae_jax.data import tfds as tfds_source

    channels = image_shape(dataset_config)[-1]
    if dataset_config.name == "image_folder":
        return image_folder.load(dataset_config.path, split, channels)
    if reads_idx_files(dataset_config):
        return idx.load(dataset_config.name, dataset_config.path, split, channels)
    return tfds_source.load(dataset_config, split)


def process_batch_size(global_batch_size: int) -> int:
    """How many rows of each global batch this process feeds."""
    return global_batch_size // jax.process_count()


def train_batches(config: ml_collections.ConfigDict, start_step: int = 0) -> Iterator[Batch]:
    """Infinite training batches from the train split (never validation or test), starting at
    step `start_step`: this process's process_batch_size(config.train.batch_size) rows of each.
    Image folders are fully permuted every epoch; TFDS data is shuffled through a buffer of
    dataset.shuffle_buffer examples.

    Raises DataNotFoundError at once (not at the first batch) when the data is not on disk.
    """
    d = config.dataset
    if d.name == "shapes":
        return shapes.train_batches(
            config.seed,
            config.train.batch_size,
            start_step,
            process=(jax.process_index(), jax.process_count()),
        )
    from vae_jax.data import pipeline

    source = _source(d, "train")
    return pipeline.train_batches(
        source.elements,
        source.num_examples,
        pipeline.preprocess_fn(d.crop, d.image_size, source.channels),
        seed=config.seed,
        batch_size=process_batch_size(config.train.batch_size),
        start_step=start_step,
        # Paths are cheap to hold: permute all of them, so a class-per-folder tree mixes classes.
        shuffle_buffer=None if d.name == "image_folder" else d.shuffle_buffer,
        cache=d.cache,
        flip=d.random_flip,
        dynamic_binarization=d.dynamic_binarization,
        read=source.read,
    )


class EvalBatches:
    """The batches of eval_batches: an iterable that starts a fresh pass each time it is
    iterated, over num_examples examples."""

    def __init__(self, make_iterator: Callable[[], Iterator[Batch]], num_examples: int):
        self._make_iterator = make_iterator
        self.num_examples = num_examples

    def __iter__(self) -> Iterator[Batch]:
        return self._make_iterator()


def eval_batches(
    config: ml_collections.ConfigDict, split: str = "test", num_examples: int | None = -1
) -> EvalBatches:
    """Ordered passes over the first `num_examples` of `split`, exactly that split: "train",
    "validation" or "test" (None: all of it; by default config.eval.num_examples). The files are
    listed once; each `iter()` is a new pass. Dynamic binarisation uses a fixed seed, not
    config.seed, so every run is scored on the same bits.

    Raises ValueError naming the splits there are when `split` is not one of them.
    """
    check_split(split)
    if num_examples == -1:
        num_examples = config.eval.num_examples
    d = config.dataset
    if d.name == "shapes":
        batch_size = config.eval.batch_size
        shapes.eval_batches(split, batch_size, num_examples)  # fails now if num_examples is bad
        count = num_examples or len(shapes.splits(shapes.SPLIT_SEED)[split])
        return EvalBatches(lambda: shapes.eval_batches(split, batch_size, num_examples), count)
    from vae_jax.data import pipeline

    source = _source(d, split)
    num_examples = min(source.num_examples, num_examples or source.num_examples)
    batches = pipeline.eval_batches(
        source.elements,
        num_examples,
        pipeline.preprocess_fn(d.crop, d.image_size, source.channels),
        batch_size=config.eval.batch_size,
        dynamic_binarization=d.dynamic_binarization,
        read=source.read,
    )
    return EvalBatches(lambda: iter(batches), num_examples)
