"""MNIST-format datasets from a folder of idx files: MNIST, Fashion-MNIST and KMNIST as their
authors distribute them, without TFDS.

    --config.dataset.name=fashion_mnist --config.dataset.path=/usr/share/datasets/fashion-mnist

The folder holds the four files train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each gzipped (.gz) or not. Debian's
`dataset-fashion-mnist` package installs the real Fashion-MNIST files this way (re-gzipped, so
TFDS's checksums fail although the content is the original). The splits are exactly those of the
TFDS route (tfds.split_range): validation is the last 6,000 of the 60,000 training images, so
numbers from either route compare.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_jax.data import tfds as tfds_source
from vae_jax.data.pipeline import Source
from vae_jax.data.types import DataNotFoundError, check_split

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# The idx header's type byte: only unsigned bytes occur in these datasets.
UNSIGNED_BYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (gzipped or not) as a uint8 array of the shape its header gives.

    Raises ValueError naming the file when the header is not that of an idx file of unsigned
    bytes, or the data are shorter than it says."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != UNSIGNED_BYTE:
        raise ValueError(f"{path} is not an idx file of unsigned bytes (header {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(shape)):
        raise ValueError(
            f"{path}: the header gives shape {shape} ({int(np.prod(shape))} bytes) but "
            f"{len(raw) - start} bytes follow"
        )
    return np.frombuffer(raw, np.uint8, offset=start).reshape(shape)


def find_file(folder: Path, stem: str) -> Path | None:
    """folder/stem or folder/stem.gz, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def missing_files_message(name: str, folder: Path, missing: list[str]) -> str:
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
    lines = [
        f"dataset.name={name!r} with dataset.path={str(folder)!r}: "
        + ("the folder does not exist" if found is None else f"missing {', '.join(missing)}"),
        "Put the four idx files of the dataset there (gzipped or not): "
        + ", ".join(stem for stems in FILES.values() for stem in stems),
    ]
    if name == "fashion_mnist":
        lines.append(
            "On Debian/Ubuntu: apt-get install dataset-fashion-mnist, then "
            "--config.dataset.path=/usr/share/datasets/fashion-mnist"
        )
    lines.append("Or unset dataset.path to load it through TFDS.")
    if found is not None:
        lines.append(f"The folder holds: {found[:10]}")
    return "\n".join(lines)


def read_split_files(name: str, path: str | Path, file_split: str) -> tuple[np.ndarray, ...]:
    """(images uint8 [N, H, W, 1], labels int32 [N]) of the files of `file_split` ("train" or
    "test"). Raises DataNotFoundError listing what to place when a file is missing."""
    folder = Path(path).expanduser()
    files = [find_file(folder, stem) for stem in FILES[file_split]]
    missing = [stem for stem, found in zip(FILES[file_split], files) if found is None]
    if missing:
        raise DataNotFoundError(missing_files_message(name, folder, missing))
    images, labels = (read_idx(f) for f in files)
    if len(images) != len(labels):
        raise ValueError(f"{files[0]} has {len(images)} images but {files[1]} {len(labels)} labels")
    return images[..., None], labels.astype(np.int32)


def load(name: str, path: str | Path, split: str, channels: int = 1) -> Source:
    """Our `split` ("train", "validation" or "test") of the idx files under `path`, with the
    TFDS route's split rule: elements {"image": uint8 [28, 28, 1], "label": int32}, decoded
    to `channels` (1, or 3 for grey repeated into RGB) by the pipeline."""
    check_split(split)
    sizes = {"train": 60_000, "test": 10_000}
    file_split, _, _ = tfds_source.split_range(name, sizes, split)
    images, labels = read_split_files(name, path, file_split)
    sizes[file_split] = len(images)  # the real counts, should a folder hold another number
    _, start, stop = tfds_source.split_range(name, sizes, split)
    elements = {"image": images[start:stop], "label": labels[start:stop]}
    return Source(
        elements=tf.data.Dataset.from_tensor_slices(elements),
        num_examples=stop - start,
        channels=channels,
    )
