"""Every convolution of the shipped conv experiments, timed part by part: forward, input gradient
(dx) and weight gradient (dW), as GFLOP/s against this machine's XLA matmul rate.

    python benchmarks/layers.py [--repeats=20] [--flag_below=0.25]

The layers are those the experiments' models build (models.conv: Downsample2x stages down,
Upsample2x stages up, 4x4 kernels, batch train.batch_size), plus the CelebA model shaped like
the PyTorch peer (channels 32-64-128-256-512). Each part is jitted alone (XLA drops what the part
does not need: dx alone computes no dW) and timed as the median of --repeats calls. A part
below --flag_below of the matmul rate is flagged: that is where the next slow path is. The dx of
a model's first layer is timed but never flagged: training never computes the images' gradient.

Prints one JSON line for the matmul rate, then one per layer shape (the experiments using it
listed), parts ordered forward, dx, dW.
"""

import importlib
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from vae_jax import data
from vae_jax.models.heads import raw_outputs
from vae_jax.models.layers import conv_transpose_2x, strided_conv_2x

flags.DEFINE_integer("repeats", 20, "Timed calls per part; the median is reported.")
flags.DEFINE_float("flag_below", 0.25, "Flag parts below this fraction of the matmul rate.")
FLAGS = flags.FLAGS

KERNEL = 4
# (name, experiment module, config overrides of model) of the models whose convs are timed.
MODELS = (
    ("shapes", "shapes", {}),
    ("celeba", "celeba", {}),
    ("celeba shaped like the peer", "celeba", {"channels": (32, 64, 128, 256, 512), "hidden": ()}),
    ("cifar10", "cifar10", {}),
    ("fashion_mnist", "fashion_mnist", {}),
    ("shapes3d", "shapes3d", {}),
)


def timed(fn, *args) -> float:
    """Median seconds of one call of jitted `fn`, after a compiling call."""
    jax.block_until_ready(fn(*args))
    seconds = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def matmul_gflops(size: int = 1024) -> float:
    """XLA's float32 matmul rate here: a [size, size] x [size, size] dot."""
    a = jnp.ones((size, size), jnp.float32)
    return 2 * size**3 / timed(jax.jit(jnp.dot), a, a) / 1e9


def conv_layers(module: str, overrides: dict) -> list[tuple]:
    """(kind, batch, input [H, W, Cin], output channels) of each conv of the model:
    kind "first" (the Downsample2x that reads the images), "down" (Downsample2x) or "up"
    (Upsample2x)."""
    config = importlib.import_module(f"experiments.{module}").get_config()
    config.model.update(overrides)
    height, width, channels = data.image_shape(config.dataset)
    batch, stages = config.train.batch_size, config.model.channels
    layers = []
    for i, features in enumerate(stages):
        layers.append(("first" if i == 0 else "down", batch, (height, width, channels), features))
        height, width, channels = -(-height // 2), -(-width // 2), features
    size = (config.dataset.image_size // 2 ** len(stages),) * 2
    image_channels = data.image_shape(config.dataset)[2]
    m = config.model
    outputs = raw_outputs(m.likelihood, image_channels, m.mixture_components)
    for features in list(reversed(stages[:-1])) + [outputs]:
        layers.append(("up", batch, size + (channels,), features))
        size, channels = (2 * size[0], 2 * size[1]), features
    return layers


def time_layer(kind: str, batch: int, in_shape: tuple, features: int) -> dict[str, float]:
    """Seconds of forward, dx and dW of one layer, and its FLOPs per part."""
    height, width, channels = in_shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, height, width, channels)), jnp.float32)
    if kind in ("first", "down"):
        fn, kernel_shape = strided_conv_2x, (KERNEL, KERNEL, channels, features)
        flops = 2 * batch * -(-height // 2) * -(-width // 2) * features * channels * KERNEL**2
    else:
        fn, kernel_shape = conv_transpose_2x, (KERNEL, KERNEL, features, channels)
        flops = 2 * batch * height * width * features * channels * KERNEL**2
    kernel = jnp.asarray(rng.normal(size=kernel_shape) / np.sqrt(channels * 16), jnp.float32)
    g = jnp.ones_like(fn(x, kernel))
    parts = {
        "forward": jax.jit(fn),
        "dx": jax.jit(lambda x, k: jax.vjp(fn, x, k)[1](g)[0]),
        "dW": jax.jit(lambda x, k: jax.vjp(fn, x, k)[1](g)[1]),
    }
    return {name: timed(part, x, kernel) for name, part in parts.items()}, flops


def main(argv):
    del argv
    peak = matmul_gflops()
    print(json.dumps({"benchmark": "layers", "xla_matmul_gflop_per_s": round(peak, 1)}))
    users: dict[tuple, list[str]] = {}
    for name, module, overrides in MODELS:
        for layer in conv_layers(module, overrides):
            users.setdefault(layer, []).append(name)
    for (kind, batch, in_shape, features), models in users.items():
        seconds, flops = time_layer(kind, batch, in_shape, features)
        record = {
            "layer": "Upsample2x" if kind == "up" else "Downsample2x",
            "batch": batch,
            "input": "x".join(map(str, in_shape)),
            "features": features,
            "models": models,
            "mflop": round(flops / 1e6, 1),
        }
        for part, s in seconds.items():
            rate = flops / s / 1e9
            record[f"{part}_ms"] = round(1000 * s, 2)
            record[f"{part}_gflop_per_s"] = round(rate, 1)
        record["flagged"] = [
            p for p in seconds if flops / seconds[p] / 1e9 < FLAGS.flag_below * peak
        ]
        print(json.dumps(record))


if __name__ == "__main__":
    app.run(main)
