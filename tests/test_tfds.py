"""TFDS sources through the real tfds code paths: mock_data for CelebA / MNIST / CIFAR-10 /
dSprites / 3D Shapes, and a real offline build from the files in ../shared/data where they are
present."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments import base, celeba, cifar10, mnist
from vae_jax import data, train
from vae_jax.data import factorial, pipeline
from vae_jax.data import tfds as tfds_source
from vae_jax.data.tfds import CELEB_A_FILES
from vae_jax.writers import read_metrics

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
MNIST_SIZES = {"train": 60_000, "test": 10_000}
CELEB_A_SIZES = {"train": 162_770, "validation": 19_867, "test": 19_962}
# The one file each full-factorial dataset is built from, and where to get it.
FACTORIAL_FILES = {
    "dsprites": ("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5", "deepmind/dsprites-dataset"),
    "shapes3d": ("3dshapes.h5", "https://storage.googleapis.com/3d-shapes/3dshapes.h5"),
}


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the data layer tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def no_network(monkeypatch):
    refuse_network(monkeypatch)


@pytest.fixture(scope="module")
def cmaterdb_config(tmp_path_factory):
    """The tiny CIFAR-10 config on real cmaterdb/bangla (5,000 train, 1,000 test), built offline
    from the files in ../shared/data once for this module."""
    if not (SHARED_DATA / "cmaterdb" / "bangla").is_dir():
        pytest.skip("real cmaterdb files are not in ../shared/data")
    config = cifar10.get_config("tiny")
    config.dataset.update(
        name="cmaterdb/bangla",
        data_dir=str(tmp_path_factory.mktemp("tfds")),
        manual_dir=str(SHARED_DATA / "cmaterdb" / "bangla"),
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        refuse_network(monkeypatch)
        tfds_source.prepare(config.dataset)
    return config


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


def factorial_config(tmp_path, name, with_manual_file=True):
    """A tiny config for dsprites or shapes3d (64x64, no flips) with its data_dir in tmp_path
    (and its manual file, empty: under mock_data TFDS never opens it)."""
    config = base.make_tiny(base.get_config())
    config.dataset.update(name=name, image_size=64, data_dir=str(tmp_path / "tfds"))
    if with_manual_file:
        manual = tmp_path / "tfds" / "downloads" / "manual"
        manual.mkdir(parents=True)
        (manual / FACTORIAL_FILES[name][0]).touch()
    return config


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def mnist_config(tmp_path):
    """The tiny MNIST config in tmp_path, without flips or binarisation: batches hold the
    dataset's own pixels, so images can be matched across splits."""
    config = mnist.get_config("tiny")
    config.dataset.update(data_dir=str(tmp_path / "tfds"), dynamic_binarization=False)
    return config


def image_list(batches) -> list[bytes]:
    """Every image [H, W, C] in `batches`, in order, as bytes."""
    return [image.tobytes() for batch in batches for image in batch["image"]]


def image_set(batches) -> set[bytes]:
    """Every image [H, W, C] in `batches`, as bytes."""
    return set(image_list(batches))


def raw_train_images(config, num_examples: int) -> list[bytes]:
    """TFDS's own "train" split (before any carving) through the evaluation preprocessing."""
    d = config.dataset
    dataset_builder = tfds_source.builder(d)
    examples = dataset_builder.as_dataset(
        split="train", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    preprocess = pipeline.preprocess_fn(d.crop, d.image_size, 1)
    return [
        preprocess({"image": e["image"]})["image"].numpy().tobytes()
        for e in examples.take(num_examples)
    ]


@pytest.mark.parametrize(
    "sizes, split, want",
    [
        (MNIST_SIZES, "train", ("train[:54000]", 54_000)),
        (MNIST_SIZES, "validation", ("train[54000:]", 6_000)),
        (MNIST_SIZES, "test", ("test", 10_000)),
        ({"train": 50_000, "test": 10_000}, "validation", ("train[45000:]", 5_000)),
        ({"train": 500_000, "test": 10_000}, "validation", ("train[490000:]", 10_000)),
        ({"train": 5_000, "test": 1_000}, "train", ("train[:4500]", 4_500)),
    ],
)
def test_tfds_split_carves_validation_from_the_end_of_train_when_there_is_none(sizes, split, want):
    assert tfds_source.tfds_split("mnist", sizes, split) == want


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_tfds_split_keeps_celeb_a_official_splits(split):
    assert tfds_source.tfds_split("celeb_a", CELEB_A_SIZES, split) == (split, CELEB_A_SIZES[split])


@pytest.mark.parametrize(
    "num_train, split, want",
    [
        (737_280, "train", ("train[:717280]", 717_280)),  # dSprites
        (737_280, "validation", ("train[717280:727280]", 10_000)),
        (737_280, "test", ("train[727280:]", 10_000)),
        (480_000, "train", ("train[:460000]", 460_000)),  # 3D Shapes
        (480_000, "validation", ("train[460000:470000]", 10_000)),
        (480_000, "test", ("train[470000:]", 10_000)),
        (20, "validation", ("train[16:18]", 2)),
    ],
)
def test_tfds_split_carves_validation_and_test_from_the_end_of_a_train_only_dataset(
    num_train, split, want
):
    assert tfds_source.tfds_split("dsprites", {"train": num_train}, split) == want


def test_tfds_split_never_substitutes_validation_for_a_missing_test_split():
    with pytest.raises(ValueError, match="no 'test' split; it has: train, validation"):
        tfds_source.tfds_split("imagenet_like", {"train": 100, "validation": 10}, "test")
    with pytest.raises(ValueError, match="is not one of: train, validation, test"):
        tfds_source.tfds_split("mnist", MNIST_SIZES, "valid")


@pytest.mark.slow
def test_real_cmaterdb_validation_is_the_last_tenth_of_train_and_training_never_reads_it(
    cmaterdb_config,
):
    config = cmaterdb_config.copy_and_resolve_references()
    config.dataset.random_flip = False
    validation = image_list(data.eval_batches(config, "validation", None))
    tail = tfds_source.builder(config.dataset).as_dataset(split="train[4500:]")
    preprocess = pipeline.preprocess_fn(config.dataset.crop, config.dataset.image_size, 3)
    assert validation == [preprocess(e)["image"].numpy().tobytes() for e in tail]
    train_part = image_list(data.eval_batches(config, "train", None))
    assert len(train_part) == 4_500
    # The data holds a few duplicate images: count only validation images absent from train.
    validation_only = set(validation) - set(train_part)
    assert len(validation_only) > 450, len(validation_only)
    config.train.batch_size = 500
    batches = data.train_batches(config)
    trained = image_list(next(batches) for _ in range(2 * 9))  # two epochs of 9 batches
    assert set(trained) == set(train_part) and not set(trained) & validation_only


def test_mock_mnist_validation_is_the_last_examples_of_tfds_train(tmp_path):
    config = mnist_config(tmp_path)
    with tfds.testing.mock_data(num_examples=20):  # carved: 18 train, 2 validation
        validation = image_list(data.eval_batches(config, "validation", None))
        raw_train = raw_train_images(config, 20)
    # (mock_data fills every split with the same examples, so this cannot also tell it from test)
    assert validation == raw_train[18:]


def test_mock_mnist_training_never_reads_the_validation_examples(tmp_path):
    config = mnist_config(tmp_path)
    with tfds.testing.mock_data(num_examples=20):  # 18 train in 2 batches of 8 per epoch
        trained = image_set(take(data.train_batches(config), 20))
        raw_train = raw_train_images(config, 20)
        train_split = image_set(data.eval_batches(config, "train", None))
    assert trained <= set(raw_train[:18]), "training read examples outside the first 18"
    assert trained == train_split, "in 10 epochs training should see every train example"


def test_eval_binarisation_is_identical_for_every_seed_while_training_depends_on_it(tmp_path):
    config = mnist.get_config("tiny")
    config.dataset.data_dir = str(tmp_path / "tfds")
    images = {}
    with tfds.testing.mock_data(num_examples=20):
        for seed in (0, 1):
            config.seed = seed
            evaluation = np.concatenate([b["image"] for b in data.eval_batches(config, "test")])
            images[seed] = evaluation, next(data.train_batches(config))["image"]
    assert set(np.unique(images[0][0])) == {0.0, 1.0}
    np.testing.assert_array_equal(images[0][0], images[1][0], "eval bits depend on the seed")
    assert not np.array_equal(images[0][1], images[1][1]), "training bits ignore the seed"


@pytest.mark.parametrize("name", ["mnist", "cifar10", "image_folder"])
def test_image_shape_with_channels_set_looks_up_no_builder_and_imports_no_tensorflow(name):
    # A builder lookup needs tensorflow_datasets (and data.tfds imports TensorFlow), so checking
    # the imported modules catches both.
    script = f"""
import sys
from vae_jax import data
from vae_jax.config import get_config
config = get_config()
config.dataset.update(name={name!r}, image_size=32, channels=1, path="/no/such/folder")
assert data.image_shape(config.dataset) == (32, 32, 1), data.image_shape(config.dataset)
imported = [m for m in ("tensorflow", "tensorflow_datasets") if m in sys.modules]
assert not imported, imported
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name, channels", [("mnist", 3), ("cifar10", 1), ("binarized_mnist", 3)])
def test_tfds_batches_have_the_channels_dataset_channels_asks_for(tmp_path, name, channels):
    config = mnist_config(tmp_path)
    config.dataset.update(name=name, image_size=32 if name == "cifar10" else 28, channels=channels)
    size = config.dataset.image_size
    assert data.image_shape(config.dataset) == (size, size, channels)
    with tfds.testing.mock_data(num_examples=20):
        train = next(data.train_batches(config))["image"]
        evaluation = next(iter(data.eval_batches(config, "test")))["image"]
    assert train.shape == (8, size, size, channels), train.shape
    assert evaluation.shape[1:] == (size, size, channels), evaluation.shape


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


@pytest.mark.parametrize("name", ["dsprites", "shapes3d"])
def test_missing_factorial_file_names_it_its_source_and_the_directory_without_network(
    tmp_path, no_network, name
):
    config = factorial_config(tmp_path, name, with_manual_file=False)
    with pytest.raises(data.DataNotFoundError) as error:
        data.train_batches(config)
    message = str(error.value)
    file_name, source = FACTORIAL_FILES[name]
    assert message.startswith(f"{name} not found"), message
    assert f"{tmp_path / 'tfds' / 'downloads' / 'manual'}/ as {file_name}" in message, message
    assert source in message, message


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
        # One per input path: 3-channel crop + attributes + discretized logistic; dynamic
        # binarisation + labels; 32x32 RGB + labels. (fashion_mnist.py is mnist.py's path.)
        (celeba, "tiny", 3),
        (mnist, "conv,tiny", 1),
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
        assert "validation/elbo_bits_per_dim" in records[-1]


@pytest.mark.slow
def test_real_cmaterdb_builds_offline_from_manual_files_and_trains(
    cmaterdb_config, tmp_path, no_network
):
    config = cmaterdb_config
    train.train_and_evaluate(config, tmp_path / "run")
    batch = next(iter(data.eval_batches(config)))
    assert (
        batch["image"].shape == (16, 32, 32, 3)
        and 0 <= batch["image"].min() <= batch["image"].max() <= 1
    )
    assert batch["label"].shape == (16,)
    assert (
        tfds.builder("cmaterdb/bangla", data_dir=config.dataset.data_dir)
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


def factorial_examples(sizes, image_shape, binary=False):
    """Every factor combination of `sizes` once, in a shuffled order, each with its own random
    image: factors [N, F] and uint8 images [N, H, W, C] (0/1 pixels when binary)."""
    rng = np.random.default_rng(0)
    factors = np.stack(np.unravel_index(rng.permutation(np.prod(sizes)), sizes), axis=-1)
    images = rng.integers(0, 2 if binary else 256, (len(factors), *image_shape), np.uint8)
    return factors, images


def serve_examples(name, factors, images):
    """A mock_data as_dataset_fn serving these examples under every split name (images PNG
    encoded when the caller skips decoding, as TFDS stores them)."""

    def as_dataset(self, split, decoders=None, **kwargs):
        labels = dict(zip(factorial.FACTOR_FEATURES[name], factors.T))
        examples = tf.data.Dataset.from_tensor_slices({"image": images, **labels})
        if decoders:
            return examples.map(lambda e: {**e, "image": tf.io.encode_png(e["image"])})
        return examples

    return as_dataset


@pytest.mark.parametrize("name", ["dsprites", "shapes3d"])
def test_factor_columns_are_all_the_tfds_label_features_with_their_class_counts(tmp_path, name):
    features = tfds.builder(name, data_dir=str(tmp_path)).info.features
    labels = {f: features[f].num_classes for f in features if f.startswith("label_")}
    assert set(labels) == set(factorial.FACTOR_FEATURES[name])
    sizes = tuple(labels[f] for f in factorial.FACTOR_FEATURES[name])
    assert sizes == factorial.FACTOR_SIZES[name]
    assert data.factor_sizes(factorial_config(tmp_path, name).dataset) == sizes


@pytest.mark.parametrize("binary", [False, True])
def test_factorial_table_holds_each_image_at_its_flat_factor_index(tmp_path, binary):
    sizes, shape = (2, 3, 4), (4, 4, 1)
    factors, images = factorial_examples(sizes, shape, binary)
    path = tmp_path / "table.npy"
    chunks = [(factors[i : i + 5], images[i : i + 5]) for i in range(0, len(factors), 5)]
    factorial.write_table(path, chunks, sizes, binary)
    table = np.load(path, mmap_mode="r")
    assert table.shape == ((24, 2) if binary else (24, *shape))  # binary: 8 pixels a byte
    rows = [3, 17, 3, 0]
    got = factorial.read_table(table, factors[rows], sizes, shape, binary)
    np.testing.assert_array_equal(got, images[rows] * (255 if binary else 1))
    assert [p.name for p in tmp_path.iterdir()] == ["table.npy"]


def test_factorial_table_refuses_data_that_is_not_full_factorial(tmp_path):
    sizes = (2, 3)
    factors, images = factorial_examples(sizes, (2, 2, 1))
    path = tmp_path / "table.npy"
    with pytest.raises(ValueError, match="1 of the 6 factor combinations .* have no image"):
        factorial.write_table(path, [(factors[1:], images[1:])], sizes, binary=False)
    repeated = [(factors, images), (factors[:1], images[:1])]
    with pytest.raises(ValueError, match="occurs twice"):
        factorial.write_table(path, repeated, sizes, binary=False)
    assert list(tmp_path.iterdir()) == [], "a failed write left files behind"


@pytest.mark.parametrize("name", ["dsprites", "shapes3d"])
def test_mock_factorial_batches_hold_factor_indices_and_pixels_on_the_right_scale(tmp_path, name):
    config = factorial_config(tmp_path, name)
    sizes = factorial.FACTOR_SIZES[name]
    # max_value=2: mock dSprites pixels are 0/1, as the real ones are stored.
    with tfds.testing.mock_data(num_examples=20, max_value=2 if name == "dsprites" else None):
        batches = [next(data.train_batches(config)), next(iter(data.eval_batches(config)))]
    for batch in batches:
        images, factors = batch["image"], batch["factors"]
        assert images.shape[1:] == (64, 64, 1 if name == "dsprites" else 3), images.shape
        assert factors.shape == (len(images), len(sizes)) and factors.dtype == np.int32
        assert (factors >= 0).all() and (factors < np.array(sizes)).all(), factors
        levels = set(np.unique(np.round(images * 255)))
        if name == "dsprites":
            assert levels == {0, 255}, f"dSprites pixels should be 0 or 1, got {levels} / 255"
        else:
            assert len(levels) > 100, f"3D Shapes pixels should span 8 bits: {len(levels)} levels"


@pytest.mark.parametrize("name", ["dsprites", "shapes3d"])
def test_mock_factorial_splits_are_consecutive_blocks_of_tfds_train_and_training_reads_one(
    tmp_path, name
):
    config = factorial_config(tmp_path, name)
    features = factorial.FACTOR_FEATURES[name]
    with tfds.testing.mock_data(num_examples=20):  # carved: 16 train, 2 validation, 2 test
        splits = {s: list(data.eval_batches(config, s, None)) for s in data.SPLITS}
        raw = tfds_source.builder(config.dataset).as_dataset(split="train", shuffle_files=False)
        raw_factors = np.array([[e[f] for f in features] for e in tfds.as_numpy(raw)])
        num_train = data.num_train_examples(config.dataset)
        trained = image_set(take(data.train_batches(config), 6))  # 3 epochs of 2 batches
    factors = {s: np.concatenate([b["factors"] for b in batches]) for s, batches in splits.items()}
    assert {s: len(f) for s, f in factors.items()} == {"train": 16, "validation": 2, "test": 2}
    assert num_train == 16
    in_order = np.concatenate([factors["train"], factors["validation"], factors["test"]])
    np.testing.assert_array_equal(in_order, raw_factors)  # also: columns in FACTOR_FEATURES order
    images = {s: image_set(batches) for s, batches in splits.items()}
    assert len(images["train"] | images["validation"] | images["test"]) == 20, "splits overlap"
    assert trained == images["train"], "training read outside the train split"


@pytest.mark.parametrize(
    "name, sizes, image_size",
    [
        ("dsprites", (3, 1, 2, 2, 2), 64),
        ("shapes3d", (2, 1, 1, 3, 1, 2), 64),
        ("shapes3d", (2, 1, 1, 3, 1, 2), 32),  # resized, through the pipeline's own code
    ],
)
def test_images_for_factors_are_the_images_batches_hold_for_those_factors(
    tmp_path, monkeypatch, name, sizes, image_size
):
    # The real datasets are too large here: shrink the factors to a full factorial of 24 or 12.
    monkeypatch.setitem(factorial.FACTOR_SIZES, name, sizes)
    config = factorial_config(tmp_path, name)
    config.dataset.image_size = image_size
    shape = (64, 64, 1) if name == "dsprites" else (64, 64, 3)
    factors, images = factorial_examples(sizes, shape, binary=name == "dsprites")
    with tfds.testing.mock_data(as_dataset_fn=serve_examples(name, factors, images)):
        batches = [b for s in data.SPLITS for b in data.eval_batches(config, s, None)]
        looked_up = data.images_for_factors(
            config.dataset, np.concatenate([b["factors"] for b in batches])
        )
    in_batches = np.concatenate([b["image"] for b in batches])
    assert len(in_batches) == len(factors)  # every combination, in TFDS's (shuffled) order
    np.testing.assert_array_equal(looked_up, in_batches)
    table = np.load(tmp_path / "tfds" / name / "2.0.0" / "factorial_images.npy", mmap_mode="r")
    assert table.shape[0] == len(factors)
