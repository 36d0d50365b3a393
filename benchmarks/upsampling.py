"""Train and forward time of 2x upsampling choices in a CelebA-64 decoder stack, on the CPU.

    python benchmarks/upsampling.py
    python benchmarks/upsampling.py --kernel-size 3 --repeats 20

The stack is [B, 4, 4, 256] -> 8x8x128 -> 16x16x64 -> 32x32x32 -> [B, 64, 64, 3], LeakyReLU
between stages. Variants:
    conv_transpose             nn.ConvTranspose(f, (k, k), strides=2, padding="SAME")
    upsample2x                 vae_jax.models.layers.Upsample2x(f, k)
    upsample2x_lax_forward     the same custom VJP with lax.conv_transpose as forward
    resize_conv                nearest resize x2, then nn.Conv(f, (3, 3))
A train step is jit(value_and_grad(sum(decoder(z)))) with respect to params and z; a forward
is jit(decoder). Calls alternate between variants so that drift from other work on the machine
hits all of them alike. Prints one JSON line per variant: medians over --repeats after --warmup.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from vae_jax.models import layers

INPUT_SHAPE = (4, 4, 256)
FEATURES = (128, 64, 32, 3)


@jax.custom_vjp
def _conv_transpose_2x_lax_forward(x, kernel):
    return lax.conv_transpose(
        x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True
    )


def _lax_forward_fwd(x, kernel):
    return _conv_transpose_2x_lax_forward(x, kernel), (x, kernel)


def _lax_forward_bwd(residuals, g):
    _, vjp = jax.vjp(layers.conv_transpose_2x, *residuals)  # its forward is dead code under jit
    return vjp(g)


_conv_transpose_2x_lax_forward.defvjp(_lax_forward_fwd, _lax_forward_bwd)


class UpsampleLaxForward(nn.Module):
    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(in_axis=-1, out_axis=-2),
            (self.kernel_size, self.kernel_size, self.features, x.shape[-1]),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return _conv_transpose_2x_lax_forward(x, kernel) + bias


class ResizeConv(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        batch, height, width, channels = x.shape
        x = jax.image.resize(x, (batch, 2 * height, 2 * width, channels), "nearest")
        return nn.Conv(self.features, (3, 3), padding="SAME")(x)


def make_stage(variant: str, features: int, kernel_size: int) -> nn.Module:
    if variant == "conv_transpose":
        return nn.ConvTranspose(
            features, (kernel_size, kernel_size), strides=(2, 2), padding="SAME"
        )
    if variant == "upsample2x":
        return layers.Upsample2x(features, kernel_size)
    if variant == "upsample2x_lax_forward":
        return UpsampleLaxForward(features, kernel_size)
    if variant == "resize_conv":
        return ResizeConv(features)
    raise ValueError(f"variant={variant!r} is not one of: {', '.join(VARIANTS)}")


VARIANTS = ("conv_transpose", "upsample2x", "upsample2x_lax_forward", "resize_conv")


class Decoder(nn.Module):
    variant: str
    kernel_size: int

    @nn.compact
    def __call__(self, h):
        for i, features in enumerate(FEATURES):
            h = make_stage(self.variant, features, self.kernel_size)(h)
            if i < len(FEATURES) - 1:
                h = nn.leaky_relu(h)
        return h


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--kernel-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()

    z = jax.random.normal(jax.random.key(0), (args.batch, *INPUT_SHAPE))
    runs = {}
    for variant in args.variants.split(","):
        model = Decoder(variant, args.kernel_size)
        params = jax.jit(model.init)(jax.random.key(1), z)
        forward = jax.jit(model.apply)
        train = jax.jit(jax.value_and_grad(lambda p, z, m=model: jnp.sum(m.apply(p, z)), (0, 1)))
        compile_s = seconds(train, params, z)
        for _ in range(args.warmup):
            seconds(train, params, z)
            seconds(forward, params, z)
        runs[variant] = {
            "params": params,
            "forward": forward,
            "train": train,
            "compile_s": compile_s,
            "train_s": [],
            "forward_s": [],
        }
    for _ in range(args.repeats):
        for run in runs.values():
            run["train_s"].append(seconds(run["train"], run["params"], z))
            run["forward_s"].append(seconds(run["forward"], run["params"], z))

    baseline = (
        statistics.median(runs["conv_transpose"]["train_s"]) if "conv_transpose" in runs else None
    )
    for variant, run in runs.items():
        train_s, forward_s = statistics.median(run["train_s"]), statistics.median(run["forward_s"])
        print(
            json.dumps(
                {
                    "variant": variant,
                    "batch": args.batch,
                    "kernel_size": args.kernel_size if variant != "resize_conv" else 3,
                    "train_ms": round(1e3 * train_s, 1),
                    "train_ms_min_max": [
                        round(1e3 * min(run["train_s"]), 1),
                        round(1e3 * max(run["train_s"]), 1),
                    ],
                    "forward_ms": round(1e3 * forward_s, 1),
                    "train_img_per_s": round(args.batch / train_s, 1),
                    "train_speedup_vs_conv_transpose": round(baseline / train_s, 2)
                    if baseline
                    else None,
                    "first_train_call_s": round(run["compile_s"], 2),
                    "repeats": args.repeats,
                    "backend": jax.default_backend(),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
