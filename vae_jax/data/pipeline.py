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
# An epoch's flip bits are drawn with (epoch seed, FLIP_STREAM).
FLIP_STREAM = 1


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


def to_uint8(element: Element) -> Element:
    """A preprocessed element with its float image (on the 8-bit grid) as uint8, 4x smaller to
    cache; from_uint8 gives back exactly the same floats."""
    return {**element, "image": tf.cast(tf.round(element["image"] * 255.0), tf.uint8)}


def from_uint8(element: Element) -> Element:
    """Inverse of to_uint8: the image as float32 in [0, 1]."""
    return {**element, "image": tf.cast(element["image"], tf.float32) / 255.0}


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
    image in [0, 1]); with `cache` their outputs are kept in memory, as uint8, from the first
    epoch on (CelebA-64's 162,770 training images: 2.0 GB), and later epochs decode nothing.
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
        num_examples,
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
    num_examples: int,
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
    """The batches of train_batches, epoch after epoch (a generator: runs lazily).

    Examples travel as uint8 up to the batch; flipping and the conversion to float are done on
    whole batches (per example they cap a cached pipeline at about 7,000 images/s on 2 cores).
    Example i of an epoch is flipped when bit i of the epoch's flip bits is set.
    """
    steps_per_epoch = num_examples // batch_size
    indexed = elements.enumerate()
    if cache:
        indexed = read_indexed(indexed, read)
        indexed = indexed.map(lambda i, e: (i, to_uint8(preprocess(e))), tf.data.AUTOTUNE).cache()

    def prepare(index, element, epoch_key: int):
        if not cache:
            element = to_uint8(preprocess(element))
        if dynamic_binarization:
            example_key = tf.stack([tf.constant(epoch_key, tf.int64), tf.cast(index, tf.int64)])
            element = {**element, "image": binarize(from_uint8(element)["image"], example_key + 1)}
        return index, element

    def finish(indices, batch, flips):
        images = batch["image"]
        if flip:
            width = images.shape[2]
            mirrored = tf.gather(flips, indices)[:, None]
            columns = tf.where(mirrored, tf.range(width - 1, -1, -1), tf.range(width))
            images = tf.gather(images, columns, axis=2, batch_dims=1)
        if images.dtype == tf.uint8:
            images = from_uint8({"image": images})["image"]
        return {**batch, "image": images}

    epoch, offset = divmod(start_step, steps_per_epoch)
    while True:
        key = epoch_seed(seed, epoch)
        flips = tf.random.stateless_uniform([num_examples], (key, FLIP_STREAM)) < 0.5
        ordered = (
            indexed.shuffle(shuffle_buffer, seed=key, reshuffle_each_iteration=False)
            .take(steps_per_epoch * batch_size)
            .skip(offset * batch_size)
        )
        if not cache:
            ordered = read_indexed(ordered, read)
        if not cache or dynamic_binarization:
            ordered = ordered.map(functools.partial(prepare, epoch_key=key), tf.data.AUTOTUNE)
        dataset = (
            ordered.batch(batch_size, drop_remainder=True)
            .map(functools.partial(finish, flips=flips), tf.data.AUTOTUNE)
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
