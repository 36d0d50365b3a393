"""The image-folder source: which files count, the hash split, undecodable files, errors."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vae_jax.data import image_folder, pipeline
from vae_jax.data.types import DataNotFoundError

# (relative path, height, width, PIL mode): CelebA-sized JPEGs, small and square images, an
# upper-case suffix, and grayscale and RGBA PNGs.
GOOD_FILES = (
    [(f"faces/{n:06d}.jpg", 218, 178, "RGB") for n in range(1, 25)]
    + [(f"small/{n:02d}.png", 40, 60, "RGB") for n in range(8)]
    + [(f"small/square/{n:02d}.JPEG", 64, 64, "RGB") for n in range(8)]
    + [("gray.png", 50, 30, "L"), ("rgba.png", 30, 50, "RGBA")]
)
CORRUPT, TRUNCATED = "broken/corrupt.jpg", "broken/truncated.jpg"
CELEBA_TEST_NUMBERS = [5, 18, 34, 59, 103, 115, 160, 173]  # of 000001.jpg ... 000200.jpg


def write_image(path: Path, height: int, width: int, mode: str, seed: int) -> None:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(
        path, "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A tree of GOOD_FILES, one file of random bytes and one truncated JPEG (both named .jpg),
    and non-image files."""
    for seed, (name, height, width, mode) in enumerate(GOOD_FILES):
        write_image(tmp_path / name, height, width, mode, seed)
    (tmp_path / CORRUPT).parent.mkdir()
    (tmp_path / CORRUPT).write_bytes(np.random.default_rng(0).bytes(5000))
    whole = (tmp_path / "faces/000001.jpg").read_bytes()
    (tmp_path / TRUNCATED).write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "faces/list_attr.csv").write_text("image_id,Smiling")
    return tmp_path


def element_bytes(source: pipeline.Source) -> list[bytes]:
    return [element["image"] for element in source.elements.as_numpy_iterator()]


def test_list_images_finds_every_jpeg_and_png_in_subfolders_and_nothing_else(root):
    expected = sorted(root / name for name, *_ in GOOD_FILES) + [root / CORRUPT, root / TRUNCATED]
    assert image_folder.list_images(root) == sorted(expected)


def test_split_of_celeba_file_names_is_pinned_across_machines_and_versions():
    base = Path("/anywhere")
    names = [f"{n:06d}.jpg" for n in range(1, 201)]
    test = [int(name[:6]) for name in names if image_folder.split_of(base / name, base) == "test"]
    assert test == CELEBA_TEST_NUMBERS


def test_split_of_holds_out_about_test_fraction_of_files():
    base = Path("/anywhere")
    names = [base / f"{n:06d}.jpg" for n in range(20_000)]
    fraction = np.mean([image_folder.split_of(p, base) == "test" for p in names])
    assert abs(fraction - image_folder.TEST_FRACTION) < 0.005, fraction


def test_split_of_depends_only_on_the_path_relative_to_the_root(root):
    for name, *_ in GOOD_FILES:
        assert image_folder.split_of(
            Path("/data/celeba") / name, "/data/celeba"
        ) == image_folder.split_of(root / name, root), name


def test_train_and_test_are_disjoint_and_cover_every_decodable_file(root):
    train = element_bytes(image_folder.load(root, "train"))
    test = element_bytes(image_folder.load(root, "test"))
    assert test, "this tree should put at least one file in the test split"
    good = sorted((root / name).read_bytes() for name, *_ in GOOD_FILES)
    assert not set(train) & set(test)
    assert sorted(train + test) == good


def test_adding_files_moves_no_file_between_splits(root):
    before = {
        split: set(element_bytes(image_folder.load(root, split))) for split in ("train", "test")
    }
    for n in range(25, 125):
        write_image(root / f"faces/{n:06d}.jpg", 218, 178, "RGB", seed=1000 + n)
    for split, old in before.items():
        assert old <= set(element_bytes(image_folder.load(root, split))), split


def test_corrupt_and_truncated_files_are_skipped_and_counted_in_the_log(root, caplog):
    with caplog.at_level(logging.WARNING):
        sizes = {split: image_folder.load(root, split).num_examples for split in ("train", "test")}
    assert sum(sizes.values()) == len(GOOD_FILES)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    skipped = sum(int(m) for m in re.findall(r"Skipping (\d+) of", warnings))
    assert skipped == 2, warnings
    assert CORRUPT in warnings and TRUNCATED in warnings, warnings


@pytest.mark.parametrize("split", ["train", "test"])
def test_num_examples_equals_images_the_pipeline_decodes(root, split):
    source = image_folder.load(root, split)

    def decode(element):
        image = tf.io.decode_image(
            element["image"], channels=source.channels, expand_animations=False
        )
        return pipeline.crop_and_resize(image, "center148", 64)

    images = list(source.elements.map(decode).as_numpy_iterator())
    assert len(images) == source.num_examples
    for image in images:
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


def test_grayscale_is_repeated_into_rgb_and_alpha_is_dropped(tmp_path):
    Image.fromarray(np.full((5, 7), 77, np.uint8), "L").save(tmp_path / "gray.png")
    transparent = np.full((5, 7, 4), (10, 20, 30, 0), np.uint8)
    Image.fromarray(transparent, "RGBA").save(tmp_path / "rgba.png")

    def decode(name):
        data = tf.io.read_file(str(tmp_path / name))
        return tf.io.decode_image(data, channels=image_folder.CHANNELS, expand_animations=False)

    np.testing.assert_array_equal(decode("gray.png")[0, 0], [77, 77, 77])
    np.testing.assert_array_equal(decode("rgba.png")[0, 0], [10, 20, 30])


@pytest.mark.parametrize("path", [None, "/no/such/folder"])
def test_missing_folder_error_says_how_to_set_the_path(path):
    with pytest.raises(DataNotFoundError, match="set --config.dataset.path=DIR"):
        image_folder.load(path, "train")


def test_folder_without_images_error_names_the_suffixes_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataNotFoundError, match=r"\.jpg, \.jpeg, \.png") as error:
        image_folder.load(tmp_path, "train")
    assert "--config.dataset.path=DIR" in str(error.value)


def test_empty_split_error_says_which_split_and_why(tmp_path):
    name = next(
        f"{n:06d}.jpg"
        for n in range(1, 100)
        if image_folder.split_of(tmp_path / f"{n:06d}.jpg", tmp_path) == "train"
    )
    write_image(tmp_path / name, 218, 178, "RGB", seed=0)
    assert image_folder.load(tmp_path, "train").num_examples == 1
    with pytest.raises(DataNotFoundError, match="test split .* is empty"):
        image_folder.load(tmp_path, "test")
