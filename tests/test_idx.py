"""MNIST-format idx folders (mnist, fashion_mnist, kmnist with dataset.path), on generated files."""

import gzip

import numpy as np
import pytest

from experiments import mnist
from vae_jax import data
from vae_jax.data import DataNotFoundError, idx

NUM_TRAIN, NUM_TEST = 120, 30


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, gzipped: bool):
    """Four idx files of random 28x28 images whose first pixel is the image's index mod 256,
    and labels index mod 10."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(count) % 256
        arrays[split] = (images, (np.arange(count) % 10).astype(np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    for split, stems in idx.FILES.items():
        for stem, array in zip(stems, arrays[split]):
            raw = idx_bytes(array)
            if gzipped:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gzipped", [True, False])
def test_read_idx_returns_the_array_written(tmp_path, gzipped):
    arrays = write_idx_folder(tmp_path, gzipped)
    stem = idx.FILES["train"][0]
    path = tmp_path / (stem + ".gz" if gzipped else stem)
    np.testing.assert_array_equal(idx.read_idx(path), arrays["train"][0])


def test_a_file_that_is_not_idx_or_is_short_fails_naming_it(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is not an idx file"):
        idx.read_idx(bad)
    bad.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"shape \(2, 3\) \(6 bytes\) but 5 bytes follow"):
        idx.read_idx(bad)


def fashion_config(folder):
    config = mnist.get_config("ladder,tiny")
    config.dataset.name = "fashion_mnist"
    config.dataset.path = str(folder)
    config.eval.batch_size = 1000
    config.dataset.dynamic_binarization = False  # the pixels as stored
    return config


def test_splits_follow_the_tfds_rule_and_keep_the_files_order_and_labels(tmp_path):
    arrays = write_idx_folder(tmp_path / "fashion", gzipped=True)
    config = fashion_config(tmp_path / "fashion")
    assert data.image_shape(config.dataset) == (28, 28, 1)
    carved = round(0.1 * NUM_TRAIN)  # the last 10 % of train is validation
    sizes = {"train": NUM_TRAIN - carved, "validation": carved, "test": NUM_TEST}
    starts = {"train": 0, "validation": NUM_TRAIN - carved, "test": 0}
    for split, size in sizes.items():
        (batch,) = list(data.eval_batches(config, split, None))
        assert batch["image"].shape[0] == size, split
        first_pixels = np.rint(batch["image"][:, 0, 0, 0] * 255).astype(int)
        source = arrays["test" if split == "test" else "train"]
        expected = np.arange(starts[split], starts[split] + size)
        np.testing.assert_array_equal(first_pixels, source[0][expected, 0, 0])
        np.testing.assert_array_equal(batch["label"], expected % 10)
    assert data.num_train_examples(config.dataset) == sizes["train"]


def test_missing_idx_files_fail_listing_them_and_how_to_get_fashion_mnist(tmp_path):
    write_idx_folder(tmp_path / "partial", gzipped=False)
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte").unlink()
    config = fashion_config(tmp_path / "partial")
    with pytest.raises(DataNotFoundError) as error:
        data.eval_batches(config, "test")
    message = str(error.value)
    assert "missing t10k-labels-idx1-ubyte" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "/usr/share/datasets/fashion-mnist" in message
