"""A folder tree of JPEG/PNG images as a dataset, e.g. an unzipped CelebA `img_align_celeba/`.

    --config.dataset.name=image_folder --config.dataset.path=/data/img_align_celeba

Every JPEG/PNG under the folder (recursively, suffix in any case) is an example. A SHA-256 of
each file's path relative to the folder, read as a number in [0, 1), puts about TEST_FRACTION of
them in the test split and the next VALIDATION_FRACTION in the validation split; the rest are
train. A file's split therefore depends only on its own name: the same on every machine and in
every process, and adding or removing files never moves another file between splits.

Training reads the train paths in a full random permutation per epoch (not through a shuffle
buffer over the sorted paths, which in a class-per-folder tree gives batches from one or two
folders). Images keep their own channel count unless dataset.channels says otherwise: a folder
whose first image (by path) is grayscale is read as 1 channel, anything else as RGB.

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
from PIL import Image, UnidentifiedImageError

from vae_jax.data.pipeline import Source
from vae_jax.data.types import DataNotFoundError, check_split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# 5% of CelebA's 202,599 images is ~10k test images: enough for a stable test ELBO, and as many
# for validation, while training keeps 90%. (Not CelebA's official partition: a plain folder has
# no partition file.)
TEST_FRACTION = 0.05
VALIDATION_FRACTION = 0.05
# PIL modes read as one channel; every other mode is read as RGB (alpha dropped).
GRAYSCALE_MODES = ("1", "L", "LA")
NUM_EXAMPLES_LOGGED = 5


def list_images(root: str | Path) -> list[Path]:
    """Every file under `root`, in all subfolders, whose suffix is in IMAGE_SUFFIXES (any case),
    sorted."""
    return sorted(
        p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def split_of(path: Path, root: str | Path) -> str:
    """The split of `path`, from a SHA-256 of its path relative to `root` read as a number in
    [0, 1): "test" in the first TEST_FRACTION of that range, "validation" in the next
    VALIDATION_FRACTION, else "train".

    The relative path is hashed in POSIX form, so the split is the same on every OS and does not
    depend on where the folder is mounted.
    """
    relative = Path(path).relative_to(root).as_posix()
    draw = int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big") / 2**64
    if draw < TEST_FRACTION:
        return "test"
    return "validation" if draw < TEST_FRACTION + VALIDATION_FRACTION else "train"


def _root(path: str | Path | None) -> Path:
    """dataset.path as a folder that exists, or DataNotFoundError saying how to set it."""
    root = Path(path).expanduser() if path is not None else None
    if root is None or not root.is_dir():
        is_file = root is not None and root.is_file()
        problem = "is a file, not a folder" if is_file else "does not exist"
        raise DataNotFoundError(
            f"dataset.path={path!r} {problem}; "
            "set --config.dataset.path=DIR to a folder of JPEG/PNG images"
        )
    return root


def _images(root: Path) -> list[Path]:
    """list_images(root), or DataNotFoundError saying what was looked for when there are none."""
    images = list_images(root)
    if not images:
        raise DataNotFoundError(
            f"dataset.path={str(root)!r} holds no images (looked in all subfolders for files "
            f"ending in {', '.join(IMAGE_SUFFIXES)}, any case); "
            "set --config.dataset.path=DIR to a folder of JPEG/PNG images"
        )
    return images


def detect_channels(path: str | Path | None) -> int:
    """Channels of the images under `path`: 1 when the first file (by path) that PIL can open
    has a mode in GRAYSCALE_MODES, else 3.

    Raises DataNotFoundError when the folder is missing, holds no images, or none opens.
    """
    root = _root(path)
    images = _images(root)
    for image_path in images:
        try:
            with Image.open(image_path) as image:
                return 1 if image.mode in GRAYSCALE_MODES else 3
        except (OSError, UnidentifiedImageError):  # undecodable files are skipped on loading too
            continue
    raise DataNotFoundError(
        f"None of the {len(images)} images under dataset.path={str(root)!r} opens; "
        "use a folder of readable JPEG/PNG images"
    )


def decodable(paths: list[Path]) -> list[bool]:
    """Whether each file reads and decodes with tf.io.decode_image, as the pipeline decodes it."""

    def check(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, expand_animations=False)
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


def read(element: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """{"path": tf.string} -> {"image": the encoded file bytes}."""
    return {"image": tf.io.read_file(element["path"])}


def load(path: str | Path | None, split: str, channels: int) -> Source:
    """The `split` ("train", "validation" or "test") of the images under `path`, sorted by path,
    decoded to `channels` (1 or 3): elements {"path": tf.string}, which Source.read turns into
    {"image": the encoded file bytes} after shuffling.

    Raises DataNotFoundError, saying what to do, when the folder is missing, holds no images, or
    the split is empty.
    """
    check_split(split)
    root = _root(path)
    images = _images(root)
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
            f"{TEST_FRACTION:.0%} of the images go to test and {VALIDATION_FRACTION:.0%} to "
            "validation: use a folder of at least a few hundred readable JPEG/PNG images"
        )
    logging.info("image_folder: %d %s images under %s", len(good), split, root)
    paths = tf.constant([str(p) for p in good], tf.string)
    return Source(
        elements=tf.data.Dataset.from_tensor_slices({"path": paths}),
        num_examples=len(good),
        channels=channels,
        read=read,
    )
