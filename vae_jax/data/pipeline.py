"""tf.data pipelines shared by every on-disk source (TFDS, image folders).

A source provides `elements`: a tf.data.Dataset of dicts with "image" (encoded bytes or uint8
[h, w, c]; plus extras such as "attributes") in a fixed order, or of cheap references that its
`read` turns into such dicts (file paths), and its size. From it this module builds

  training batches: this process's shard, shuffled per epoch with a seed derived from
      (seed, epoch) (through a buffer, or fully permuted), read, cropped and resized, randomly
      flipped (stateless: seeded by epoch and example index), batched with drop_remainder and
      prefetched. Batch t depends only on (seed, t), and a run resumed at step t skips straight
      to its epoch and position;
  evaluation batches: the split in order, no flips, the last batch possibly smaller, binarised
      (when on) with EVAL_BINARIZATION_SEED, whatever the run's seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from vae_jax.data.types import Batch

# tf.data is only an input pipeline here: keep TensorFlow off any accelerator.
tf.config.set_visible_devices([], "GPU")

Element = dict[str, tf.Tensor]

# Dynamically binarised evaluation data is drawn with this seed, not the run's: every seed of a
# sweep is scored on identical bits.
EVAL_BINARIZATION_SEED = 0


class Source(NamedTuple):
    """One split of an on-disk dataset, before decoding.

    elements:     dicts {"image": tf.string, the encoded JPEG/PNG bytes, or uint8 [h, w, c], plus
                  extras such as "attributes"} in a fixed order; or, with `read`, cheap
                  references to them (file paths)
    num_examples: how many elements there are
    channels:     channels of the decoded images (1 or 3)
    read:         element -> element with "image", applied after shuffling, so a full shuffle
                  moves references rather than images; elements it fails on (a file deleted
                  after loading) drop out rather than stopping the run. None: elements hold
                  the images already.
    """

    elements: tf.data.Dataset
    num_examples: int
    channels: int
    read: Callable[[Element], Element] | None = None


# CelebA crops (rows, cols) on the 218x178 aligned images: "center148" is the common CelebA-64
# protocol (center 148x148, e.g. Larsen et al. 2016, Tolstikhin et al. 2018); "nvae" is the box
# used by NVAE / VDVAE / Glow (rows 40:188, cols 15:163).
NVAE_BOX = (40, 15, 148, 148)  # top, left, height, width
CENTER_CROP = 148


def crop_and_resize(image: tf.Tensor, crop: str, image_size: int) -> tf.Tensor:
    """uint8 [h, w, c] -> float32 [image_size, image_size, c] in [0, 1] (or a batch of them,
    [n, h, w, c] -> [n, image_size, image_size, c]).

    crop: "center148" (center 148x148, or the largest centered square of a smaller image),
    "nvae" (rows 40:188, cols 15:163) or "none"; then an antialiased bilinear resize, skipped
    when the size already matches.
    """
    image = tf.convert_to_tensor(image)
    if crop == "center148":
        height, width = tf.shape(image)[-3], tf.shape(image)[-2]
        side = tf.minimum(CENTER_CROP, tf.minimum(height, width))
        image = tf.image.crop_to_bounding_box(
            image, (height - side) // 2, (width - side) // 2, side, side
        )
    elif crop == "nvae":
        image = tf.image.crop_to_bounding_box(image, *NVAE_BOX)
    image = tf.cast(image, tf.float32) / 255.0
    shape = tf.shape(image)
    resized = tf.image.resize(image, (image_size, image_size), "bilinear", antialias=True)
    same_size = tf.logical_and(tf.equal(shape[-3], image_size), tf.equal(shape[-2], image_size))
    image = tf.cond(same_size, lambda: image, lambda: resized)
    # Back onto the 8-bit grid {0, 1/255, ..., 1}: a discretized likelihood (bits/dim) is only a
    # probability of values on that grid.
    image = tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0) / 255.0
    return tf.ensure_shape(image, image.shape[:-3].concatenate((image_size, image_size, None)))


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """uint8 [..., h, w, c] -> [..., h, w, channels], for c and channels in {1, 3}: grey repeated
    into RGB, or RGB to luma (what decode_image does for encoded images)."""
    if image.shape[-1] == channels:
        return image
    return tf.image.grayscale_to_rgb(image) if channels == 3 else tf.image.rgb_to_grayscale(image)


def preprocess_fn(crop: str, image_size: int, channels: int) -> Callable[[Element], Element]:
    """Maps an element whose "image" is encoded bytes or uint8 [h, w, c] to one whose "image"
    is float32 [S, S, channels] in [0, 1]; also a batch of uint8 images [n, h, w, c] to
    [n, S, S, channels]."""

    def preprocess(element: Element) -> Element:
        image = element["image"]
        if image.dtype == tf.string:
            image = tf.io.decode_image(image, channels=channels, expand_animations=False)
        else:
            image = to_channels(image, channels)
        return {**element, "image": crop_and_resize(image, crop, image_size)}

    return preprocess


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible shuffle seed for each epoch."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def binarize(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Dynamic binarisation: each pixel is 1 with probability equal to its intensity."""
    return tf.cast(tf.random.stateless_uniform(tf.shape(image), seed) < image, tf.float32)


def read_indexed(
    indexed: tf.data.Dataset, read: Callable[[Element], Element] | None
) -> tf.data.Dataset:
    """(index, element) pairs with `read` applied to each element (see Source.read)."""
    if read is None:
        return indexed
    return indexed.map(lambda i, e: (i, read(e)), tf.data.AUTOTUNE).ignore_errors(log_warning=True)


def shard_for_this_process(
    elements: tf.data.Dataset, num_examples: int
) -> tuple[tf.data.Dataset, int]:
    """Every process reads its own 1/process_count of the examples."""
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        return elements, num_examples
    return elements.shard(count, index), num_examples // count + (index < num_examples % count)


def train_batches(
    elements: tf.data.Dataset,
    num_examples: int,
    preprocess: Callable[[Element], Element],
    *,
    seed: int,
    batch_size: int,
    start_step: int = 0,
    shuffle_buffer: int | None = 10_000,
    cache: bool = False,
    flip: bool = True,
    dynamic_binarization: bool = False,
    read: Callable[[Element], Element] | None = None,
) -> Iterator[Batch]:
    """Infinite training batches [batch_size, ...] starting at step `start_step`.

    `read` (see Source.read) then `preprocess` map one element to model-ready values (float
    image in [0, 1]); with `cache` their outputs are kept in memory after the first epoch.
    Each epoch is shuffled through a buffer of `shuffle_buffer` elements, or (None) fully
    permuted: a uniformly random order of all of this process's elements.
    """
    elements, num_examples = shard_for_this_process(elements, num_examples)
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch == 0:  # checked here, before the first batch is asked for
        raise ValueError(
            f"train.batch_size / process count = {batch_size} rows is larger than the "
            f"{num_examples} training examples this process reads"
        )
    return _epochs(
        elements,
        preprocess,
        steps_per_epoch,
        seed=seed,
        batch_size=batch_size,
        start_step=start_step,
        # A buffer at least as large as the data holds all of it: a uniform permutation.
        shuffle_buffer=num_examples if shuffle_buffer is None else shuffle_buffer,
        cache=cache,
        flip=flip,
        dynamic_binarization=dynamic_binarization,
        read=read,
    )


def _epochs(
    elements: tf.data.Dataset,
    preprocess: Callable[[Element], Element],
    steps_per_epoch: int,
    *,
    seed: int,
    batch_size: int,
    start_step: int,
    shuffle_buffer: int,
    cache: bool,
    flip: bool,
    dynamic_binarization: bool,
    read: Callable[[Element], Element] | None,
) -> Iterator[Batch]:
    """The batches of train_batches, epoch after epoch (a generator: runs lazily)."""
    indexed = elements.enumerate()
    if cache:
        indexed = read_indexed(indexed, read)
        indexed = indexed.map(lambda i, e: (i, preprocess(e)), tf.data.AUTOTUNE).cache()

    def augment(index, element, epoch_key: int):
        element = dict(element if cache else preprocess(element))
        example_key = tf.stack([tf.constant(epoch_key, tf.int64), tf.cast(index, tf.int64)])
        if flip:
            element["image"] = tf.image.stateless_random_flip_left_right(
                element["image"], example_key
            )
        if dynamic_binarization:
            element["image"] = binarize(element["image"], example_key + 1)
        return element

    epoch, offset = divmod(start_step, steps_per_epoch)
    while True:
        key = epoch_seed(seed, epoch)
        ordered = (
            indexed.shuffle(shuffle_buffer, seed=key, reshuffle_each_iteration=False)
            .take(steps_per_epoch * batch_size)
            .skip(offset * batch_size)
        )
        dataset = (
            (ordered if cache else read_indexed(ordered, read))
            .map(functools.partial(augment, epoch_key=key), tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
        )
        yield from dataset.as_numpy_iterator()
        epoch, offset = epoch + 1, 0


def eval_batches(
    elements: tf.data.Dataset,
    num_examples: int,
    preprocess: Callable[[Element], Element],
    *,
    batch_size: int,
    dynamic_binarization: bool = False,
    read: Callable[[Element], Element] | None = None,
) -> Iterable[Batch]:
    """The first `num_examples` elements in order, read (see Source.read) and preprocessed, in
    batches of up to batch_size; each `iter()` of the result is a new pass.

    Dynamic binarisation, when on, is seeded by (EVAL_BINARIZATION_SEED, index): the same bits
    every time and for every run.
    """

    def prepare(index, element):
        element = dict(preprocess(element))
        if dynamic_binarization:
            key = tf.stack([tf.constant(EVAL_BINARIZATION_SEED, tf.int64), index])
            element["image"] = binarize(element["image"], key)
        return element

    dataset = (
        read_indexed(elements.take(num_examples).enumerate(), read)
        .map(prepare, tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return tfds.as_numpy(dataset)
