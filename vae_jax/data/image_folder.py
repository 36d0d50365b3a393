"""A folder tree of JPEG/PNG images as a dataset, e.g. an unzipped CelebA `img_align_celeba/`.

    --config.dataset.name=image_folder --config.dataset.path=/data/img_align_celeba

Every JPEG/PNG under the folder (recursively, suffix in any case) is an example; about
TEST_FRACTION of them form the test split, chosen by a SHA-256 of each file's path relative to
the folder. A file's split therefore depends only on its own name: the same on every machine
and in every process, and adding or removing files never moves another file between splits.

Files that do not decode (corrupt, truncated, unreadable) are found when a split is loaded, by
decoding each file once with the decoder the pipeline uses, and left out with a warning, so
`num_examples` is exactly the number of images training sees. A header check (PIL `verify`)
would be cheaper but passes truncated JPEGs, which then fail in `tf.io.decode_image`; the full
check's cost on CelebA is in the README's Data section.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import tensorflow as tf
from absl import logging

from vae_jax.data.pipeline import Source
from vae_jax.data.types import DataNotFoundError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# 5% of CelebA's 202,599 images is ~10k test images: enough for a stable test ELBO, while
# training keeps 95%. (Not CelebA's official partition: a plain folder has no partition file.)
TEST_FRACTION = 0.05
CHANNELS = 3  # grayscale is repeated into RGB and alpha dropped by decode_image(channels=3)
SPLITS = ("train", "test")
NUM_EXAMPLES_LOGGED = 5


def list_images(root: str | Path) -> list[Path]:
    """Every file under `root`, in all subfolders, whose suffix is in IMAGE_SUFFIXES (any case),
    sorted."""
    return sorted(
        p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def split_of(path: Path, root: str | Path) -> str:
    """The split of `path`: "test" when a SHA-256 of its path relative to `root` falls in
    the first TEST_FRACTION of the hash range, else "train".

    The relative path is hashed in POSIX form, so the split is the same on every OS and does not
    depend on where the folder is mounted.
    """
    relative = Path(path).relative_to(root).as_posix()
    draw = int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big") / 2**64
    return "test" if draw < TEST_FRACTION else "train"


def decodable(paths: list[Path]) -> list[bool]:
    """Whether each file reads and decodes with tf.io.decode_image, as the pipeline decodes it."""

    def check(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=CHANNELS, expand_animations=False)
        # Only the index is needed, but returning the shape too keeps the decode from being
        # pruned (a control dependency is not enough), so a failing file raises here and
        # ignore_errors drops its index.
        return index, tf.shape(image)

    checked = (
        tf.data.Dataset.from_tensor_slices(tf.constant([str(p) for p in paths], tf.string))
        .enumerate()
        .map(check, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        # Hand the results over in blocks: one Python iteration per file would cost more than
        # the decode itself.
        .batch(4096)
    )
    good = {int(index) for indices, _ in checked.as_numpy_iterator() for index in indices}
    return [index in good for index in range(len(paths))]


def load(path: str | Path | None, split: str) -> Source:
    """The `split` ("train" or "test") of the images under `path`, sorted by path: elements
    {"image": the encoded file bytes}.

    Raises DataNotFoundError, saying what to do, when the folder is missing, holds no images, or
    the split is empty.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of: {', '.join(SPLITS)}")
    root = Path(path).expanduser() if path is not None else None
    if root is None or not root.is_dir():
        raise DataNotFoundError(
            f"dataset.path={path!r} does not exist; "
            "set --config.dataset.path=DIR to a folder of JPEG/PNG images"
        )
    images = list_images(root)
    if not images:
        raise DataNotFoundError(
            f"dataset.path={str(root)!r} holds no images (looked in all subfolders for files "
            f"ending in {', '.join(IMAGE_SUFFIXES)}, any case); "
            "set --config.dataset.path=DIR to a folder of JPEG/PNG images"
        )
    candidates = [p for p in images if split_of(p, root) == split]
    ok = decodable(candidates)
    good = [p for p, keep in zip(candidates, ok) if keep]
    bad = [p for p, keep in zip(candidates, ok) if not keep]
    if bad:
        logging.warning(
            "Skipping %d of %d %s images under %s that do not decode, e.g. %s",
            len(bad),
            len(candidates),
            split,
            root,
            ", ".join(str(p.relative_to(root)) for p in bad[:NUM_EXAMPLES_LOGGED]),
        )
    if not good:
        raise DataNotFoundError(
            f"The {split} split of dataset.path={str(root)!r} is empty: of its {len(images)} "
            f"images, {len(candidates)} fall in it and {len(good)} of those decode. About "
            f"{TEST_FRACTION:.0%} of the images go to test: use a folder of at least a few "
            "hundred readable JPEG/PNG images"
        )
    logging.info("image_folder: %d %s images under %s", len(good), split, root)
    elements = (
        tf.data.Dataset.from_tensor_slices(tf.constant([str(p) for p in good], tf.string))
        .map(lambda p: {"image": tf.io.read_file(p)}, num_parallel_calls=tf.data.AUTOTUNE)
        # A file deleted or made unreadable after loading drops out rather than stopping the run.
        .ignore_errors(log_warning=True)
    )
    return Source(elements=elements, num_examples=len(good), channels=CHANNELS)
