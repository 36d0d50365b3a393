"""TFDS sources: CelebA (from files the user placed on disk), MNIST, Fashion-MNIST, binarized
MNIST, CIFAR-10, and any other TFDS dataset with an "image" feature, by name.

A builder that is not yet prepared in `dataset.data_dir` is built once: from the files in the
manual directory (`dataset.manual_dir`, default `<data_dir>/downloads/manual`) when they are all
there, otherwise by TFDS's own download. CelebA is never downloaded: TFDS fetches it from Google
Drive, which fails more often than not, so a missing file stops the run at once with a message
that lists the files and where to put them (TFDS would otherwise retry the network for minutes).
"""

from __future__ import annotations

import os
from pathlib import Path

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from vae_jax.data.pipeline import Source
from vae_jax.data.types import DataNotFoundError

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


def _tfds_split(dataset_builder: tfds.core.DatasetBuilder, split: str) -> str:
    """Our "train" / "test" / "validation" in the builder's own split names."""
    available = dataset_builder.info.splits.keys()
    if not available:  # a builder without split metadata (e.g. under tfds.testing.mock_data)
        return split
    fallbacks = {"test": ("test", "validation"), "validation": ("validation", "test")}
    for name in fallbacks.get(split, (split,)):
        if name in available:
            return name
    raise ValueError(
        f"TFDS {dataset_builder.name!r} has no {split!r} split; it has {sorted(available)}"
    )


def _num_examples(
    dataset_builder: tfds.core.DatasetBuilder, split: str, examples: tf.data.Dataset
) -> int:
    """From the split metadata, or by counting when the builder has none."""
    if split in dataset_builder.info.splits:
        return dataset_builder.info.splits[split].num_examples
    return int(examples.reduce(0, lambda count, _: count + 1))


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
    """One split of dataset.name as encoded images (decoded for binary-pixel datasets) + extras."""
    dataset_builder = prepare(dataset_config)
    tfds_split = _tfds_split(dataset_builder, split)
    binary_pixels = dataset_config.name in BINARY_PIXEL_DATASETS
    # Keep JPEG/PNG bytes until after shuffling and skipping: decoding is the expensive part.
    decoders = None if binary_pixels else {"image": tfds.decode.SkipDecoding()}
    examples = dataset_builder.as_dataset(split=tfds_split, shuffle_files=False, decoders=decoders)

    def to_element(example):
        image = example["image"] * 255 if binary_pixels else example["image"]
        return {"image": image, **_extras(example)}

    return Source(
        elements=examples.map(to_element, tf.data.AUTOTUNE),
        num_examples=_num_examples(dataset_builder, tfds_split, examples),
        channels=dataset_builder.info.features["image"].shape[-1],
    )
