"""TFDS sources: CelebA, dSprites and 3D Shapes (from files the user placed on disk), MNIST,
Fashion-MNIST, binarized MNIST, CIFAR-10, and any other TFDS dataset with an "image" feature, by
name.

A builder that is not yet prepared in `dataset.data_dir` is built once: from the files in the
manual directory (`dataset.manual_dir`, default `<data_dir>/downloads/manual`) when they are all
there, otherwise by TFDS's own download. CelebA, dSprites and 3D Shapes are never downloaded
(TFDS fetches CelebA from Google Drive, which fails more often than not): a missing file stops
the run at once with a message that names the files, where to get them and where to put them
(TFDS would otherwise retry the network for minutes).

Splits are exactly TFDS's, except that a dataset without a "validation" split (MNIST,
Fashion-MNIST, CIFAR-10, cmaterdb, ...) has one carved out of the end of its "train": the last
carved_validation_size(n) of its n training examples (10 %, at most MAX_CARVED_VALIDATION), which
training then never reads. A dataset whose only split is "train" (dSprites, 3D Shapes) has its
test split carved out the same way, the last carved_validation_size(n), and validation just
before it. CelebA keeps its official validation split.

dSprites and 3D Shapes are full-factorial: batches carry their factor indices as "factors", and
images_for_factors looks up the image of any factor combination (see factorial.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from vae_jax.data import factorial, pipeline
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
# Where to get the one file each full-factorial dataset is built from (never downloaded, see above).
FACTORIAL_SOURCES = {
    "dsprites": "the .hdf5 file of the dSprites repository, github.com/deepmind/dsprites-dataset",
    "shapes3d": "the 3D Shapes bucket, also gs://3d-shapes/3dshapes.h5 with gsutil cp",
}
# The lookup table of a full-factorial dataset, beside its TFDS data (see factorial_table).
FACTORIAL_TABLE = "factorial_images.npy"
# Datasets stored with pixel values {0, 1} rather than {0, 255}.
BINARY_PIXEL_DATASETS = ("binarized_mnist", "dsprites")
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


def factorial_not_found_message(
    dataset_config: ml_collections.ConfigDict, dataset_builder: tfds.core.DatasetBuilder
) -> str:
    """What to download for dSprites or 3D Shapes, and where to put it."""
    name, manual = dataset_config.name, manual_dir(dataset_config)
    [(url, info)] = dataset_builder.url_infos.items()  # one file each
    return (
        f"{name} not found: TFDS {name} is not built in {data_dir(dataset_config)} and {manual} "
        f"lacks {info.filename}.\n"
        f"Download {url} ({FACTORIAL_SOURCES[name]}) and put it in {manual}/ as "
        f"{info.filename}\n"
        "  (or point --config.dataset.manual_dir=DIR at the folder holding it; set "
        "--config.dataset.data_dir=DIR to build somewhere else), then run again: TFDS checks "
        f"its checksum and builds {name} once."
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
    if missing and dataset_config.name in FACTORIAL_SOURCES:
        raise DataNotFoundError(factorial_not_found_message(dataset_config, dataset_builder))
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


def split_range(name: str, split_sizes: Mapping[str, int], split: str) -> tuple[str, int, int]:
    """Our `split` of TFDS `name` as (TFDS split, start, stop): its examples [start, stop), given
    the dataset's split sizes {TFDS split name: examples}.

    Without a TFDS "validation" split, ours is the last v = carved_validation_size(n) of TFDS's n
    "train" examples and our "train" the rest; when "train" is the only TFDS split, our "test" is
    its last v, validation the v before them and train the rest. Raises ValueError naming the
    splits there are when the dataset has no such split.
    """
    check_split(split)
    carve = "validation" not in split_sizes and "train" in split_sizes
    only_train = set(split_sizes) == {"train"}
    if carve and (split != "test" or only_train):
        num_train = split_sizes["train"]
        carved = carved_validation_size(num_train)
        test_start = num_train - carved if only_train else num_train
        bounds = {
            "train": (0, test_start - carved),
            "validation": (test_start - carved, test_start),
            "test": (test_start, num_train),
        }
        return ("train", *bounds[split])
    if split not in split_sizes:
        ours = sorted(set(split_sizes) | ({"validation"} if carve else set()))
        raise ValueError(f"TFDS {name!r} has no {split!r} split; it has: {', '.join(ours)}")
    return split, 0, split_sizes[split]


def tfds_split(name: str, split_sizes: Mapping[str, int], split: str) -> tuple[str, int]:
    """Our `split` (see split_range) as a TFDS split with slicing, e.g. "train[54000:]", and its
    size. Raises ValueError naming the splits there are when the dataset has no such split."""
    tfds_name, start, stop = split_range(name, split_sizes, split)
    end = split_sizes[tfds_name]
    if (start, stop) == (0, end):
        return tfds_name, end
    return f"{tfds_name}[{start or ''}:{'' if stop == end else stop}]", stop - start


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
    # No split metadata: only a builder under tfds.testing.mock_data, which serves the same
    # examples under any split name and ignores slicing. Carve them as the real splits would be:
    # the full-factorial datasets have only "train", the others "train" and "test".
    train = dataset_builder.as_dataset(split="train", shuffle_files=False, decoders=decoders)
    num_train = _count(train)
    only_train = dataset_builder.name in factorial.FACTOR_SIZES
    split_sizes = {"train": num_train} if only_train else {"train": num_train, "test": num_train}
    name, start, stop = split_range(dataset_builder.name, split_sizes, split)
    examples = dataset_builder.as_dataset(split=name, shuffle_files=False, decoders=decoders)
    return examples.skip(start).take(stop - start), stop - start


def channels(
    dataset_config: ml_collections.ConfigDict, dataset_builder: tfds.core.DatasetBuilder
) -> int:
    """dataset.channels, or (None) the channels of the builder's "image" feature."""
    if dataset_config.channels is not None:
        return dataset_config.channels
    return dataset_builder.info.features["image"].shape[-1]


def _extras(name: str, example: dict) -> dict[str, tf.Tensor]:
    """Labels kept beside the image for analysis (never fed to the model)."""
    extras = {}
    if "attributes" in example:
        attributes = example["attributes"]
        extras["attributes"] = tf.stack(
            [tf.cast(attributes[n], tf.int32) for n in CELEB_A_ATTRIBUTES]
        )
    if "label" in example:
        extras["label"] = tf.cast(example["label"], tf.int32)
    if name in factorial.FACTOR_FEATURES:
        extras["factors"] = _factors(name, example)
    return extras


def _factors(name: str, example: dict) -> tf.Tensor:
    """The example's factor indices, int32 [F] (or [B, F] for a batch of examples)."""
    return tf.stack([tf.cast(example[f], tf.int32) for f in factorial.FACTOR_FEATURES[name]], -1)


def load(dataset_config: ml_collections.ConfigDict, split: str) -> Source:
    """Our `split` ("train", "validation" or "test", see tfds_split) of dataset.name as encoded
    images (decoded for binary-pixel datasets) + extras."""
    dataset_builder = prepare(dataset_config)
    name = dataset_config.name
    binary_pixels = name in BINARY_PIXEL_DATASETS
    # Keep JPEG/PNG bytes until after shuffling and skipping: decoding is the expensive part.
    decoders = None if binary_pixels else {"image": tfds.decode.SkipDecoding()}
    examples, num_examples = _split_examples(dataset_builder, split, decoders)

    def to_element(example):
        image = example["image"] * 255 if binary_pixels else example["image"]
        return {"image": image, **_extras(name, example)}

    return Source(
        elements=examples.map(to_element, tf.data.AUTOTUNE),
        num_examples=num_examples,
        channels=channels(dataset_config, dataset_builder),
    )


def factorial_table(
    dataset_config: ml_collections.ConfigDict, dataset_builder: tfds.core.DatasetBuilder
) -> np.ndarray:
    """The full-factorial dataset's images at their flat factor indices (factorial.write_table),
    memory-mapped from <data_dir>/<name>/<version>/factorial_images.npy. The first call writes
    that file from one pass over all of TFDS "train" (every split), which takes minutes.

    dataset_builder: prepare(dataset_config).
    """
    name = dataset_config.name
    path = data_dir(dataset_config) / name / str(dataset_builder.version) / FACTORIAL_TABLE
    if not path.is_file():
        logging.info("Writing the factor lookup table of %s to %s", name, path)
        examples = dataset_builder.as_dataset(split="train", shuffle_files=False)
        chunks = examples.batch(4096).map(lambda batch: (_factors(name, batch), batch["image"]))
        binary = name in BINARY_PIXEL_DATASETS
        factorial.write_table(path, tfds.as_numpy(chunks), factorial.FACTOR_SIZES[name], binary)
    return np.load(path, mmap_mode="r")


def images_for_factors(
    dataset_config: ml_collections.ConfigDict, factors: np.ndarray
) -> np.ndarray:
    """Factor indices [N, F] -> the images with those factors, float32 [N, S, S, C] in [0, 1],
    preprocessed exactly as evaluation batches are (dataset.image_size, channels, crop). Each call
    opens the builder and the table (~10 ms): ask for many images at once."""
    d = dataset_config
    dataset_builder = prepare(d)
    native_shape = dataset_builder.info.features["image"].shape
    images = factorial.read_table(
        factorial_table(d, dataset_builder),
        factors,
        factorial.FACTOR_SIZES[d.name],
        native_shape,
        binary=d.name in BINARY_PIXEL_DATASETS,
    )
    target_shape = (d.image_size, d.image_size, channels(d, dataset_builder))
    if native_shape == target_shape:
        # What the pipeline makes of an image of its target size (crops "none" and "center148"
        # keep all of a 64x64 image), 5-10x faster than running it.
        return images.astype(np.float32) / 255
    preprocess = pipeline.preprocess_fn(d.crop, d.image_size, target_shape[-1])
    return preprocess({"image": tf.constant(images)})["image"].numpy()
