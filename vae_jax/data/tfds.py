"""TFDS sources: CelebA (from files the user placed on disk), MNIST, Fashion-MNIST, binarized
MNIST, CIFAR-10, and any other TFDS dataset with an "image" feature, by name.

A builder that is not yet prepared in `dataset.data_dir` is built once: from the files in the
manual directory (`dataset.manual_dir`, default `<data_dir>/downloads/manual`) when they are all
there, otherwise by TFDS's own download. CelebA is never downloaded: TFDS fetches it from Google
Drive, which fails more often than not, so a missing file stops the run at once with a message
that lists the files and where to put them (TFDS would otherwise retry the network for minutes).

Splits are exactly TFDS's, except that a dataset without a "validation" split (MNIST,
Fashion-MNIST, CIFAR-10, cmaterdb, ...) has one carved out of the end of its "train": the last
carved_validation_size(n) of its n training examples (10 %, at most MAX_CARVED_VALIDATION), which
training then never reads. CelebA keeps its official validation split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from vae_jax.data.pipeline import Source
from vae_jax.data.types import DataNotFoundError, check_split

CELEB_A_FILES = (
    "img_align_celeba.zip",
    "list_eval_partition.txt",
    "list_attr_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "identity_CelebA.txt",
)
CELEB_A_ATTRIBUTES = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
]
# Datasets stored with pixel values {0, 1} rather than {0, 255}.
BINARY_PIXEL_DATASETS = ("binarized_mnist",)
# A validation split carved out of "train" is this fraction of it, at most MAX_CARVED_VALIDATION
# examples: 6,000 of MNIST's 60,000, 5,000 of CIFAR-10's 50,000 (the usual 45k / 5k).
CARVED_VALIDATION_FRACTION = 0.1
MAX_CARVED_VALIDATION = 10_000


def data_dir(dataset_config: ml_collections.ConfigDict) -> Path:
    """dataset.data_dir, or TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR)."""
    return Path(
        dataset_config.data_dir or os.environ.get("TFDS_DATA_DIR") or tfds.core.constants.DATA_DIR
    ).expanduser()


def manual_dir(dataset_config: ml_collections.ConfigDict) -> Path:
    """dataset.manual_dir, or <data_dir>/downloads/manual."""
    if dataset_config.manual_dir:
        return Path(dataset_config.manual_dir).expanduser()
    return data_dir(dataset_config) / "downloads" / "manual"


def builder(dataset_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """The TFDS builder for dataset.name, with a ConfigError-style message for unknown names."""
    try:
        return tfds.builder(dataset_config.name, data_dir=str(data_dir(dataset_config)))
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"dataset.name={dataset_config.name!r} is not valid: use shapes, image_folder or a "
            f"TFDS dataset name (celeb_a, mnist, fashion_mnist, binarized_mnist, cifar10, ...). "
            f"TFDS said: {str(error).splitlines()[0]}"
        ) from None


def download_files(dataset_builder: tfds.core.DatasetBuilder) -> list[str]:
    """Names of the files the builder downloads (from its checksum list; none if it has none)."""
    return sorted({info.filename for info in (dataset_builder.url_infos or {}).values()})


def missing_manual_files(dataset_builder: tfds.core.DatasetBuilder, directory: Path) -> list[str]:
    """Names of the builder's download files absent from `directory` (TFDS verifies checksums)."""
    return [name for name in download_files(dataset_builder) if not (directory / name).is_file()]


def celeb_a_not_found_message(dataset_config: ml_collections.ConfigDict, missing: list[str]) -> str:
    manual = manual_dir(dataset_config)
    return (
        f"CelebA not found: TFDS celeb_a is not built in {data_dir(dataset_config)} and "
        f"{manual} lacks {', '.join(missing)}.\n"
        f"Put these five files in {manual}/ (from the CelebA site: 'Align&Cropped Images' and the "
        f"'Anno' and 'Eval' folders): {', '.join(CELEB_A_FILES)}\n"
        "  (or point --config.dataset.manual_dir=DIR at the folder holding them; set "
        "--config.dataset.data_dir=DIR to build somewhere else), then run again: TFDS checks "
        "their checksums and builds celeb_a once.\n"
        "  Or train from a folder of images: --config.dataset.name=image_folder "
        "--config.dataset.path=DIR (e.g. the unzipped img_align_celeba/)."
    )


def prepare(dataset_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """The builder for dataset.name, built first if it is not yet in data_dir."""
    dataset_builder = builder(dataset_config)
    if dataset_builder.is_prepared():
        return dataset_builder
    manual = manual_dir(dataset_config)
    missing = missing_manual_files(dataset_builder, manual)
    if missing and dataset_config.name == "celeb_a":
        raise DataNotFoundError(celeb_a_not_found_message(dataset_config, missing))
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual)) if not missing else None
    try:
        dataset_builder.download_and_prepare(download_config=download_config)
    except Exception as error:  # TFDS raises many types for network and checksum failures
        raise DataNotFoundError(
            f"Could not build TFDS {dataset_config.name!r} in {data_dir(dataset_config)}: {error}\n"
            f"To build offline, put these files in {manual}/: "
            f"{', '.join(download_files(dataset_builder))}"
        ) from error
    return dataset_builder


def carved_validation_size(num_train: int) -> int:
    """How many of `num_train` training examples a carved validation split takes (at least 1)."""
    return max(1, min(MAX_CARVED_VALIDATION, round(CARVED_VALIDATION_FRACTION * num_train)))


def tfds_split(name: str, split_sizes: Mapping[str, int], split: str) -> tuple[str, int]:
    """Our `split` as a TFDS split (with slicing) and its size, given the dataset's split sizes
    {TFDS split name: examples}.

    Without a TFDS "validation" split, ours is the last carved_validation_size(n) of TFDS's n
    "train" examples ("train[n-v:]") and our "train" the rest ("train[:n-v]"). Raises ValueError
    naming the splits there are when the dataset has no such split.
    """
    check_split(split)
    carve = "validation" not in split_sizes and "train" in split_sizes
    if carve and split in ("train", "validation"):
        num_train = split_sizes["train"]
        kept = num_train - carved_validation_size(num_train)
        if split == "train":
            return f"train[:{kept}]", kept
        return f"train[{kept}:]", num_train - kept
    if split not in split_sizes:
        ours = sorted(set(split_sizes) | ({"validation"} if carve else set()))
        raise ValueError(f"TFDS {name!r} has no {split!r} split; it has: {', '.join(ours)}")
    return split, split_sizes[split]


def _count(examples: tf.data.Dataset) -> int:
    return int(examples.reduce(0, lambda count, _: count + 1))


def _split_examples(
    dataset_builder: tfds.core.DatasetBuilder, split: str, decoders
) -> tuple[tf.data.Dataset, int]:
    """The examples of our `split` in a fixed order, and how many there are."""
    check_split(split)
    split_sizes = {
        str(name): info.num_examples for name, info in dataset_builder.info.splits.items()
    }
    if split_sizes:
        name, num_examples = tfds_split(dataset_builder.name, split_sizes, split)
        examples = dataset_builder.as_dataset(split=name, shuffle_files=False, decoders=decoders)
        return examples, num_examples
    # No split metadata: only a builder under tfds.testing.mock_data, which serves any split name
    # and ignores slicing. Carve validation out of train as for a dataset without one.
    tfds_name = "test" if split == "test" else "train"
    examples = dataset_builder.as_dataset(split=tfds_name, shuffle_files=False, decoders=decoders)
    num_examples = _count(examples)
    if split == "test":
        return examples, num_examples
    kept = num_examples - carved_validation_size(num_examples)
    if split == "train":
        return examples.take(kept), kept
    return examples.skip(kept), num_examples - kept


def channels(
    dataset_config: ml_collections.ConfigDict, dataset_builder: tfds.core.DatasetBuilder
) -> int:
    """dataset.channels, or (None) the channels of the builder's "image" feature."""
    if dataset_config.channels is not None:
        return dataset_config.channels
    return dataset_builder.info.features["image"].shape[-1]


def _extras(example: dict) -> dict[str, tf.Tensor]:
    """Labels kept beside the image for analysis (never fed to the model)."""
    extras = {}
    if "attributes" in example:
        attributes = example["attributes"]
        extras["attributes"] = tf.stack(
            [tf.cast(attributes[n], tf.int32) for n in CELEB_A_ATTRIBUTES]
        )
    if "label" in example:
        extras["label"] = tf.cast(example["label"], tf.int32)
    return extras


def load(dataset_config: ml_collections.ConfigDict, split: str) -> Source:
    """Our `split` ("train", "validation" or "test", see tfds_split) of dataset.name as encoded
    images (decoded for binary-pixel datasets) + extras."""
    dataset_builder = prepare(dataset_config)
    binary_pixels = dataset_config.name in BINARY_PIXEL_DATASETS
    # Keep JPEG/PNG bytes until after shuffling and skipping: decoding is the expensive part.
    decoders = None if binary_pixels else {"image": tfds.decode.SkipDecoding()}
    examples, num_examples = _split_examples(dataset_builder, split, decoders)

    def to_element(example):
        image = example["image"] * 255 if binary_pixels else example["image"]
        return {"image": image, **_extras(example)}

    return Source(
        elements=examples.map(to_element, tf.data.AUTOTUNE),
        num_examples=num_examples,
        channels=channels(dataset_config, dataset_builder),
    )
