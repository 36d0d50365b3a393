"""TFDS sources through the real tfds code paths: mock_data for CelebA / MNIST / CIFAR-10, and a
real offline build from the files in ../shared/data where they are present."""

import socket
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments import celeba, cifar10, fashion_mnist, mnist
from vae_jax import data, train
from vae_jax.data import pipeline
from vae_jax.data import tfds as tfds_source
from vae_jax.data.tfds import CELEB_A_FILES
from vae_jax.writers import read_metrics

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data layer tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def celeb_a_config(tmp_path, with_manual_files=True):
    """The tiny CelebA config with its data_dir in tmp_path (and the five manual files, empty:
    under mock_data TFDS never opens them)."""
    config = celeba.get_config("tiny")
    config.dataset.data_dir = str(tmp_path / "tfds")
    if with_manual_files:
        manual = tmp_path / "tfds" / "downloads" / "manual"
        manual.mkdir(parents=True)
        for name in CELEB_A_FILES:
            (manual / name).touch()
    return config


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_missing_celeb_a_names_the_five_files_and_the_alternative_without_network(
    tmp_path, no_network
):
    config = celeb_a_config(tmp_path, with_manual_files=False)
    with pytest.raises(data.DataNotFoundError) as error:
        data.train_batches(config)
    message = str(error.value)
    for name in CELEB_A_FILES:
        assert name in message
    assert str(tmp_path / "tfds" / "downloads" / "manual") in message
    assert "--config.dataset.name=image_folder --config.dataset.path=DIR" in message


def test_missing_celeb_a_fails_before_anything_is_written_or_compiled(tmp_path, no_network):
    config = celeb_a_config(tmp_path, with_manual_files=False)
    with pytest.raises(data.DataNotFoundError):
        train.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow
def test_celeb_a_batches_have_shape_range_and_attributes(tmp_path, no_network):
    config = celeb_a_config(tmp_path)
    with tfds.testing.mock_data(num_examples=20):
        batch = next(data.train_batches(config))
        eval_batch = next(iter(data.eval_batches(config)))
    assert batch["image"].shape == (8, 64, 64, 3) and batch["image"].dtype == np.float32
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    assert batch["attributes"].shape == (8, 40)
    assert set(np.unique(batch["attributes"])) <= {0, 1}
    assert eval_batch["image"].shape == (16, 64, 64, 3)


@pytest.mark.slow
def test_training_order_is_deterministic_for_a_seed_and_resumes_mid_epoch(tmp_path):
    config = celeb_a_config(tmp_path)
    with tfds.testing.mock_data(num_examples=20):  # 2 steps of 8 per epoch
        first = take(data.train_batches(config), 5)
        second = take(data.train_batches(config), 5)
        resumed = take(data.train_batches(config, start_step=3), 2)
        config.seed = 1
        other_seed = take(data.train_batches(config), 1)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(first[3:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(first[0]["image"], other_seed[0]["image"])
    assert not np.array_equal(first[0]["image"], first[2]["image"])  # epochs are reshuffled


@pytest.mark.slow
def test_flips_happen_in_training_only(tmp_path):
    config = celeb_a_config(tmp_path)
    with tfds.testing.mock_data(num_examples=20):
        flipped = np.concatenate([b["image"] for b in take(data.train_batches(config), 4)])
        config.dataset.random_flip = False
        plain = np.concatenate([b["image"] for b in take(data.train_batches(config), 4)])
        eval_images = np.concatenate([b["image"] for b in data.eval_batches(config)])
        source = tfds_source.load(config.dataset, "test")
        preprocess = pipeline.preprocess_fn("center148", 64, 3)
        expected = np.stack(
            [preprocess(e)["image"].numpy() for e in source.elements.take(len(eval_images))]
        )
    mirrored = [np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain)]
    unchanged = [np.array_equal(f, p) for f, p in zip(flipped, plain)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < len(mirrored), sum(mirrored)
    np.testing.assert_array_equal(eval_images, expected)


@pytest.mark.parametrize(
    "crop, box", [("center148", (35, 15, 148, 148)), ("nvae", (40, 15, 148, 148))]
)
def test_crops_take_the_documented_box_before_resizing(crop, box):
    image = np.random.default_rng(0).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    top, left, height, width = box
    got = pipeline.crop_and_resize(tf.constant(image), crop, 148).numpy()
    np.testing.assert_allclose(
        got, image[top : top + height, left : left + width] / 255.0, atol=1e-6
    )
    resized = pipeline.crop_and_resize(tf.constant(image), crop, 64).numpy()
    assert resized.shape == (64, 64, 3)
    np.testing.assert_allclose(resized * 255, np.round(resized * 255), atol=1e-3)  # 8-bit grid
    # Antialiased: a resized image is close to the block average of the crop.
    block_mean = image[top : top + height, left : left + width].mean() / 255.0
    assert abs(resized.mean() - block_mean) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment, arg, channels",
    [
        (celeba, "tiny", 3),
        (mnist, "tiny", 1),
        (mnist, "conv,tiny", 1),
        (fashion_mnist, "tiny", 1),
        (cifar10, "tiny", 3),
    ],
)
def test_experiment_trains_end_to_end_on_mock_data(tmp_path, experiment, arg, channels):
    config = experiment.get_config(arg)
    config.dataset.data_dir = str(tmp_path / "tfds")
    if config.dataset.name == "celeb_a":
        config = celeb_a_config(tmp_path)
    with tfds.testing.mock_data(num_examples=24):
        batch = next(data.train_batches(config))
        train.train_and_evaluate(config, tmp_path / "run")
    size = config.dataset.image_size
    assert batch["image"].shape == (8, size, size, channels)
    if config.dataset.dynamic_binarization:
        assert set(np.unique(batch["image"])) <= {0.0, 1.0}
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if "loss" in r] == [3, 6]
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    if config.model.likelihood == "discretized_logistic":
        assert "test/elbo_bits_per_dim" in records[-1]


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "cmaterdb" / "bangla").is_dir(),
    reason="real cmaterdb files are not in ../shared/data",
)
def test_real_cmaterdb_builds_offline_from_manual_files_and_trains(tmp_path, no_network):
    config = cifar10.get_config("tiny")
    config.dataset.update(
        name="cmaterdb/bangla",
        data_dir=str(tmp_path / "tfds"),
        manual_dir=str(SHARED_DATA / "cmaterdb" / "bangla"),
    )
    train.train_and_evaluate(config, tmp_path / "run")
    batch = next(iter(data.eval_batches(config)))
    assert (
        batch["image"].shape == (16, 32, 32, 3)
        and 0 <= batch["image"].min() <= batch["image"].max() <= 1
    )
    assert batch["label"].shape == (16,)
    assert (
        tfds.builder("cmaterdb/bangla", data_dir=str(tmp_path / "tfds"))
        .info.splits["train"]
        .num_examples
        == 5000
    )


def test_batch_larger_than_the_split_fails_when_the_pipeline_is_built(tmp_path):
    config = celeb_a_config(tmp_path)
    config.train.batch_size = 64
    with (
        tfds.testing.mock_data(num_examples=20),
        pytest.raises(ValueError, match="train.batch_size / process count = 64 rows is larger"),
    ):
        data.train_batches(config)
