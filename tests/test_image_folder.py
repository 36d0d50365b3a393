"""The image-folder source: which files count, the hash split, undecodable files, channels, the
per-epoch permutation, errors."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vae_jax import data
from vae_jax.config import get_config
from vae_jax.data import image_folder, pipeline
from vae_jax.data.types import SPLITS, DataNotFoundError

# (relative path, height, width, PIL mode): CelebA-sized JPEGs, small and square images, an
# upper-case suffix, and grayscale and RGBA PNGs.
GOOD_FILES = (
    [(f"faces/{n:06d}.jpg", 218, 178, "RGB") for n in range(1, 25)]
    + [(f"small/{n:02d}.png", 40, 60, "RGB") for n in range(8)]
    + [(f"small/square/{n:02d}.JPEG", 64, 64, "RGB") for n in range(8)]
    + [("gray.png", 50, 30, "L"), ("rgba.png", 30, 50, "RGBA")]
)
CORRUPT, TRUNCATED = "broken/corrupt.jpg", "broken/truncated.jpg"
# Of 000001.jpg ... 000200.jpg:
CELEBA_TEST_NUMBERS = [5, 18, 34, 59, 103, 115, 160, 173]
CELEBA_VALIDATION_NUMBERS = [23, 52, 81, 90, 126, 131, 140, 182, 183, 194]


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
    """The encoded file bytes of every element of `source`, in order."""
    read = source.elements.map(source.read)
    return [element["image"] for element in read.as_numpy_iterator()]


def folder_config(path: Path, **dataset):
    """The default config on the image folder at `path`, 8x8 images, small batches."""
    config = get_config()
    config.dataset.update(name="image_folder", path=str(path), image_size=8, **dataset)
    config.train.batch_size = 16
    config.eval.batch_size = 16
    return config


def test_list_images_finds_every_jpeg_and_png_in_subfolders_and_nothing_else(root):
    expected = sorted(root / name for name, *_ in GOOD_FILES) + [root / CORRUPT, root / TRUNCATED]
    assert image_folder.list_images(root) == sorted(expected)


def test_split_of_celeba_file_names_is_pinned_across_machines_and_versions():
    base = Path("/anywhere")
    names = [f"{n:06d}.jpg" for n in range(1, 201)]
    split = {name: image_folder.split_of(base / name, base) for name in names}
    assert [int(name[:6]) for name in names if split[name] == "test"] == CELEBA_TEST_NUMBERS
    validation = [int(name[:6]) for name in names if split[name] == "validation"]
    assert validation == CELEBA_VALIDATION_NUMBERS


def test_split_of_holds_out_about_test_and_validation_fractions_of_files():
    base = Path("/anywhere")
    splits = [image_folder.split_of(base / f"{n:06d}.jpg", base) for n in range(20_000)]
    for split, want in (
        ("test", image_folder.TEST_FRACTION),
        ("validation", image_folder.VALIDATION_FRACTION),
    ):
        fraction = np.mean([s == split for s in splits])
        assert abs(fraction - want) < 0.005, f"{split}: {fraction}"


def test_split_of_depends_only_on_the_path_relative_to_the_root(root):
    for name, *_ in GOOD_FILES:
        assert image_folder.split_of(
            Path("/data/celeba") / name, "/data/celeba"
        ) == image_folder.split_of(root / name, root), name


def test_train_validation_and_test_are_disjoint_and_cover_every_decodable_file(root):
    files = {split: element_bytes(image_folder.load(root, split, 3)) for split in SPLITS}
    for split in SPLITS:
        assert files[split], f"this tree should put at least one file in the {split} split"
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not set(files[SPLITS[a]]) & set(files[SPLITS[b]]), (SPLITS[a], SPLITS[b])
    good = sorted((root / name).read_bytes() for name, *_ in GOOD_FILES)
    assert sorted(sum(files.values(), [])) == good


def test_adding_files_moves_no_file_between_splits(root):
    before = {split: set(element_bytes(image_folder.load(root, split, 3))) for split in SPLITS}
    for n in range(25, 125):
        write_image(root / f"faces/{n:06d}.jpg", 218, 178, "RGB", seed=1000 + n)
    for split, old in before.items():
        assert old <= set(element_bytes(image_folder.load(root, split, 3))), split


def test_corrupt_and_truncated_files_are_skipped_and_counted_in_the_log(root, caplog):
    with caplog.at_level(logging.WARNING):
        sizes = {split: image_folder.load(root, split, 3).num_examples for split in SPLITS}
    assert sum(sizes.values()) == len(GOOD_FILES)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    skipped = sum(int(m) for m in re.findall(r"Skipping (\d+) of", warnings))
    assert skipped == 2, warnings
    assert CORRUPT in warnings and TRUNCATED in warnings, warnings


@pytest.mark.parametrize("split", SPLITS)
def test_num_examples_equals_images_the_pipeline_decodes(root, split):
    source = image_folder.load(root, split, 3)
    preprocess = pipeline.preprocess_fn("center148", 64, source.channels)
    read = source.elements.map(source.read)
    images = [e["image"] for e in read.map(preprocess).as_numpy_iterator()]
    assert len(images) == source.num_examples
    for image in images:
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


def test_with_three_channels_grayscale_is_repeated_into_rgb_and_alpha_is_dropped(tmp_path):
    Image.fromarray(np.full((5, 7), 77, np.uint8), "L").save(tmp_path / "gray.png")
    transparent = np.full((5, 7, 4), (10, 20, 30, 0), np.uint8)
    Image.fromarray(transparent, "RGBA").save(tmp_path / "rgba.png")
    preprocess = pipeline.preprocess_fn("none", 7, channels=3)

    def decode(name):
        return preprocess({"image": tf.io.read_file(str(tmp_path / name))})["image"].numpy()

    np.testing.assert_allclose(decode("gray.png")[0, 0], [77 / 255] * 3)
    np.testing.assert_allclose(decode("rgba.png")[0, 0], [10 / 255, 20 / 255, 30 / 255])


def test_channels_are_detected_from_the_first_image_that_opens(tmp_path):
    (tmp_path / "a_broken.png").write_bytes(b"not a png")
    write_image(tmp_path / "b_gray.png", 8, 8, "L", seed=0)
    write_image(tmp_path / "c_rgb.png", 8, 8, "RGB", seed=1)
    assert image_folder.detect_channels(tmp_path) == 1
    (tmp_path / "b_gray.png").unlink()
    assert image_folder.detect_channels(tmp_path) == 3


def test_folder_of_grayscale_pngs_gives_one_channel_batches_and_image_shape(tmp_path):
    for n in range(60):
        write_image(tmp_path / f"{n:03d}.png", 8, 8, "L", seed=n)
    config = folder_config(tmp_path)
    assert data.image_shape(config.dataset) == (8, 8, 1)
    train = next(data.train_batches(config))
    evaluation = next(iter(data.eval_batches(config, "test")))
    assert train["image"].shape == (16, 8, 8, 1), train["image"].shape
    assert evaluation["image"].shape[1:] == (8, 8, 1), evaluation["image"].shape
    config.dataset.channels = 3
    assert data.image_shape(config.dataset) == (8, 8, 3)
    assert next(data.train_batches(config))["image"].shape == (16, 8, 8, 3)


FOLDERS, FILES_PER_FOLDER = 4, 50


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    """FOLDERS class folders of FILES_PER_FOLDER 8x8 PNGs, each of one colour: red
    (k + 1) * 50 for folder k, green 4 * n for its n-th file."""
    for k in range(FOLDERS):
        (tmp_path / f"class{k}").mkdir()
        for n in range(FILES_PER_FOLDER):
            pixels = np.full((8, 8, 3), ((k + 1) * 50, 4 * n, 0), np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / f"class{k}" / f"{n:03d}.png")
    return tmp_path


def identities(batch: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(folder, file number) of each class_tree image in `batch`."""
    colours = np.round(batch["image"][:, 0, 0, :2] * 255).astype(int)
    return [(red // 50 - 1, green // 4) for red, green in colours]


def test_training_batches_mix_class_folders_whatever_the_shuffle_buffer(class_tree):
    batches = data.train_batches(folder_config(class_tree, shuffle_buffer=16))
    for step in range(3):
        folders = {folder for folder, _ in identities(next(batches))}
        assert len(folders) >= 3, f"batch {step} holds images of folders {sorted(folders)} only"


def test_image_folder_epochs_are_reshuffled_permutations_of_train_and_resume_exactly(
    class_tree,
):
    config = folder_config(class_tree)
    train = {
        (int(p.parent.name[5:]), int(p.stem))
        for p in image_folder.list_images(class_tree)
        if image_folder.split_of(p, class_tree) == "train"
    }
    steps = len(train) // config.train.batch_size  # per epoch
    straight = data.train_batches(config)
    batches = [next(straight) for _ in range(2 * steps + 2)]
    epochs = [sum(map(identities, batches[e * steps : (e + 1) * steps]), []) for e in (0, 1)]
    for epoch, seen in enumerate(epochs):
        assert len(set(seen)) == len(seen) == steps * config.train.batch_size, f"epoch {epoch}"
        assert set(seen) <= train, f"epoch {epoch} read images outside the train split"
    assert epochs[0] != epochs[1], "epochs 0 and 1 came in the same order"
    resumed = data.train_batches(config, start_step=steps + 1)
    for step in range(steps + 1, len(batches)):
        np.testing.assert_array_equal(
            next(resumed)["image"], batches[step]["image"], err_msg=f"step {step}"
        )


@pytest.mark.parametrize("path", [None, "/no/such/folder"])
def test_missing_folder_error_says_how_to_set_the_path(path):
    with pytest.raises(DataNotFoundError, match="set --config.dataset.path=DIR"):
        image_folder.load(path, "train", 3)
    with pytest.raises(DataNotFoundError, match="set --config.dataset.path=DIR"):
        image_folder.detect_channels(path)


def test_folder_without_images_error_names_the_suffixes_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataNotFoundError, match=r"\.jpg, \.jpeg, \.png") as error:
        image_folder.load(tmp_path, "train", 3)
    assert "--config.dataset.path=DIR" in str(error.value)


def test_empty_split_error_says_which_split_and_why(tmp_path):
    name = next(
        f"{n:06d}.jpg"
        for n in range(1, 100)
        if image_folder.split_of(tmp_path / f"{n:06d}.jpg", tmp_path) == "train"
    )
    write_image(tmp_path / name, 218, 178, "RGB", seed=0)
    assert image_folder.load(tmp_path, "train", 3).num_examples == 1
    with pytest.raises(DataNotFoundError, match="test split .* is empty"):
        image_folder.load(tmp_path, "test", 3)


def test_a_cached_pipeline_yields_exactly_the_uncached_batches_flips_included(root):
    config = folder_config(root / "faces")
    config.train.batch_size = 4
    steps = 3 * (len(image_folder.list_images(root / "faces")) // 4)  # a few epochs
    plain = data.train_batches(config)
    config.dataset.cache = True
    cached = data.train_batches(config)
    for step in range(steps):
        want, got = next(plain), next(cached)
        assert got["image"].dtype == np.float32
        np.testing.assert_array_equal(got["image"], want["image"], err_msg=f"step {step}")
