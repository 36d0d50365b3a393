"""Layers the models share: a stride-2 transposed convolution that trains fast on XLA:CPU
(`Upsample2x`), ReLU dense stacks, and folding extra leading axes into the batch.

`flax.linen.ConvTranspose` lowers to `lax.conv_transpose`, an lhs-dilated convolution, and on
XLA:CPU its weight gradient leaves the fast convolution path (tens of times slower; measured in
the README's Performance section and by benchmarks/upsampling.py).

The maths. Let s(u, K) be the stride-2 SAME convolution (NHWC, HWIO) taking
u [B, 2H, 2W, Cout] to [B, H, W, Cin] with K [kh, kw, Cout, Cin]. The transposed convolution is
its adjoint in u, t(x, K) = s(·, K)ᵀ x, taking x [B, H, W, Cin] to [B, 2H, 2W, Cout]. Since
<g, t(x, K)> = <s(g, K), x> for every g [B, 2H, 2W, Cout]:

    ∂/∂x <g, t(x, K)> = s(g, K)                      an ordinary strided conv
    ∂/∂K <g, t(x, K)> = (∂s(g, K)/∂K)ᵀ x             the strided conv's weight-VJP at input g

and both stay off the slow path: the first is lax's strided conv, the second is computed as
dots (`_strided_conv_kernel_grad`, as fast as or faster than lax's own weight gradient at every
shape the experiments use). `conv_transpose_2x` states these as its `jax.custom_vjp`.

The forward pass is split by output phase: output pixel (2i + a, 2j + b) only meets the kernel
taps K[a + p :: 2, b + p :: 2] (p = the low SAME padding of s), so t is four stride-1
convolutions with about k/2 x k/2 kernels whose outputs are interleaved: the minimal number of
MACs, all on the fast path. Against `lax.conv_transpose` as forward it saves about 30 % of the
forward with 4x4 kernels, and it never hits the lhs-dilated slow cases
(e.g. 5x5 kernels). With 3x3 kernels the uneven phases make it slightly slower than lax's
forward, within noise per train step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax


def flatten_batch(x: jax.Array, event_ndim: int) -> tuple[jax.Array, tuple[int, ...]]:
    """Merges all leading axes into one: [..., *event] -> ([N, *event], leading shape)."""
    lead = x.shape[: x.ndim - event_ndim]
    return x.reshape((-1,) + x.shape[x.ndim - event_ndim :]), lead


def restore_batch(tree, lead: tuple[int, ...]):
    """Splits the merged leading axis of every array back into `lead`."""
    return jax.tree.map(lambda a: a.reshape(lead + a.shape[1:]), tree)


def dense_relu(h: jax.Array, widths: Sequence[int], dtype: Any) -> jax.Array:
    """ReLU dense layers of the given widths computing in `dtype` (call inside a compact
    method)."""
    for width in widths:
        h = nn.relu(nn.Dense(width, dtype=dtype)(h))
    return h


_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
_PHASE_DIMENSION_NUMBERS = ("NHWC", "HWOI", "NHWC")  # kernel [kh, kw, Cout, Cin] as Cin -> Cout


def _strided_conv_lax(u: jax.Array, kernel: jax.Array) -> jax.Array:
    """s(u, K), the stride-2 SAME convolution, with lax's autodiff: [B, H, W, Cin].

    u: [B, 2H, 2W, Cout]; kernel: [kh, kw, Cout, Cin] (HWIO, read as Cout -> Cin).
    """
    return lax.conv_general_dilated(u, kernel, (2, 2), "SAME", dimension_numbers=_DIMENSION_NUMBERS)


def _phase_taps(phase: int, size: int) -> tuple[slice, tuple[int, int]]:
    """Kernel taps and input padding of one output phase along one spatial axis.

    With p = (size - 2) // 2, the low SAME padding of s on an even-length input, output row
    2i + phase of t is Σ_m x[i - m] K[phase + p + 2m]. Returned: the slice of kernel rows in
    correlation order (m descending) and the (low, high) padding of x that realises i - m.
    """
    shift = phase + (size - 2) // 2  # the kernel row of m = 0
    first = shift % 2  # the lowest kernel row of this phase
    last = first + 2 * ((size - 1 - first) // 2)
    m_min, m_max = (first - shift) // 2, (last - shift) // 2
    return slice(last, None if first == 0 else first - 1, -2), (m_max, -m_min)


def _conv_transpose_2x_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """t(x, K) as four stride-1 convolutions, one per output phase, interleaved."""
    kh, kw = kernel.shape[:2]
    rows = []
    for a in (0, 1):
        taps_h, pad_h = _phase_taps(a, kh)
        cols = []
        for b in (0, 1):
            taps_w, pad_w = _phase_taps(b, kw)
            cols.append(
                lax.conv_general_dilated(
                    x,
                    kernel[taps_h, taps_w],
                    (1, 1),
                    (pad_h, pad_w),
                    dimension_numbers=_PHASE_DIMENSION_NUMBERS,
                )
            )
        rows.append(jnp.stack(cols, axis=3))  # [B, H, W, 2 (b), Cout]
    y = jnp.stack(rows, axis=2)  # [B, H, 2 (a), W, 2 (b), Cout]
    batch, height, _, width, _, features = y.shape
    return y.reshape(batch, 2 * height, 2 * width, features)


@jax.custom_vjp
def _conv_transpose_2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _conv_transpose_2x_phases(x, kernel)


def _conv_transpose_2x_fwd(x, kernel):
    return _conv_transpose_2x_phases(x, kernel), (x, kernel)


def _kernel_grad_per_tap(u: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...]) -> jax.Array:
    """∂/∂K <g, s(u, K)> as one dot per kernel tap (i, j):
    Σ_{b,y,x} u[b, 2y + i, 2x + j] g[b, y, x].

    u [B, H, W, Cu] (H, W even), g [B, H/2, W/2, Cg] -> [kh, kw, Cu, Cg].
    """
    kh, kw = kernel_shape[:2]
    height, width = g.shape[1:3]
    # SAME on an even input pads k - 2 in all, (k - 2) // 2 of it below.
    low_h, low_w = (kh - 2) // 2, (kw - 2) // 2
    u = jnp.pad(u, [(0, 0), (low_h, kh - 2 - low_h), (low_w, kw - 2 - low_w), (0, 0)])
    taps = [
        jnp.einsum("bhwc,bhwd->cd", u[:, i : i + 2 * height : 2, j : j + 2 * width : 2], g)
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.stack(taps).reshape(kernel_shape)


def _kernel_grad_by_phases(u: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...]) -> jax.Array:
    """∂/∂K <g, s(u, K)> as one dot: the four phases of the padded u against shifted copies of g.

    Tap i = 2d + a reads phase a (rows a, a + 2, ... of the padded u) at row y + d for output
    row y, so Σ_y u_a[y + d] g[y] = Σ_y' u_a[y'] g_d[y'] with g_d = g moved d rows down (zeros
    elsewhere); likewise along the width. u [B, H, W, Cu] (H, W even), g [B, H/2, W/2, Cg]
    -> [kh, kw, Cu, Cg].
    """
    kh, kw, channels_u, channels_g = kernel_shape
    batch, height, width, _ = g.shape
    shifts_h, shifts_w = (kh + 1) // 2, (kw + 1) // 2  # taps per phase along each axis
    rows, cols = height + shifts_h - 1, width + shifts_w - 1  # the phases' size
    low_h, low_w = (kh - 2) // 2, (kw - 2) // 2  # SAME's low padding, as in the per-tap form
    u = jnp.pad(
        u,
        [
            (0, 0),
            (low_h, 2 * rows - u.shape[1] - low_h),
            (low_w, 2 * cols - u.shape[2] - low_w),
            (0, 0),
        ],
    )
    phases = u.reshape(batch, rows, 2, cols, 2, channels_u).transpose(0, 1, 3, 2, 4, 5)
    shifted = jnp.stack(
        [
            jnp.pad(g, [(0, 0), (d, shifts_h - 1 - d), (e, shifts_w - 1 - e), (0, 0)])
            for d in range(shifts_h)
            for e in range(shifts_w)
        ],
        axis=3,
    )  # [B, rows, cols, shifts_h * shifts_w, Cg]
    points = batch * rows * cols
    products = shifted.reshape(points, -1).T @ phases.reshape(points, -1)
    products = products.reshape(shifts_h, shifts_w, channels_g, 2, 2, channels_u)
    taps = products.transpose(0, 3, 1, 4, 5, 2).reshape(2 * shifts_h, 2 * shifts_w, -1, channels_g)
    return taps[:kh, :kw]


def _strided_conv_kernel_grad(u: jax.Array, g: jax.Array, kernel: jax.Array) -> jax.Array:
    """∂/∂K <g, s(u, K)>, the strided conv's weight gradient: kernel's shape [kh, kw, Cu, Cg]
    for u [B, H, W, Cu] (H, W even) and g [B, H/2, W/2, Cg].

    Of the two forms, the one chosen for the shape is as fast as or faster than lax's weight
    gradient at every shape the conv experiments use on XLA:CPU. Batch 64, min of 15 calls,
    lax / per tap / by phases: u 64x64x3 -> 32 channels 25-37 / 7 / 38 ms, 8x8x128 -> 256 12-13 /
    12 / 19 ms, 16x16x64 -> 128 17 / 19 / 18 ms, 32x32x32 -> 64 42-43 / 35-51 / 19 ms (32
    channels: per tap 36, by phases 12 ms), 14x14x32 -> 64 (batch 128) per tap 15, by phases 7 ms.
    XLA:CPU's strided slices are slow, and the per-tap dots contract 16,384 rows into 32x64
    outputs; the phase form reads u once in its natural order, at the cost of about 2/h more work
    from its padding (h x w the output map).
    """
    if u.shape[-1] >= 16 and u.shape[1] * u.shape[2] >= 14 * 14:
        return _kernel_grad_by_phases(u, g, kernel.shape)
    return _kernel_grad_per_tap(u, g, kernel.shape)


def _conv_transpose_2x_bwd(residuals, g):
    x, kernel = residuals
    return _strided_conv_lax(g, kernel), _strided_conv_kernel_grad(g, x, kernel)


_conv_transpose_2x.defvjp(_conv_transpose_2x_fwd, _conv_transpose_2x_bwd)


@jax.custom_vjp
def _strided_conv_2x_even(u: jax.Array, kernel: jax.Array) -> jax.Array:
    return _strided_conv_lax(u, kernel)


def _strided_conv_2x_even_fwd(u, kernel):
    return _strided_conv_lax(u, kernel), (u, kernel)


def _strided_conv_2x_even_bwd(residuals, g):
    u, kernel = residuals
    return _conv_transpose_2x_phases(g, kernel), _strided_conv_kernel_grad(u, g, kernel)


_strided_conv_2x_even.defvjp(_strided_conv_2x_even_fwd, _strided_conv_2x_even_bwd)


def _even_padding(length: int, kernel_size: int) -> tuple[int, int]:
    """The zero padding that makes an odd `length` even without changing s's output: SAME
    pads an odd input by (k - 1) // 2 below and an even one by (k - 2) // 2, so the extra
    zero goes above for even k and below for odd k."""
    if length % 2 == 0:
        return (0, 0)
    return (0, 1) if kernel_size % 2 == 0 else (1, 0)


def strided_conv_2x(u: jax.Array, kernel: jax.Array) -> jax.Array:
    """s(u, K), the stride-2 SAME convolution: [B, ceil(H / 2), ceil(W / 2), Cin].

    u: [B, H, W, Cout], any H, W >= 1; kernel: [kh, kw, Cout, Cin] (HWIO, read as Cout -> Cin),
    the layout of `nn.Conv`. Equals `lax.conv_general_dilated(u, K, (2, 2), "SAME")`; its input
    gradient is t(g, K), the phase-split transposed conv above, since lax's own (an
    lhs-dilated conv) is up to 17x slower on XLA:CPU on small maps (batch 64, 4x4 map,
    128 -> 256 channels: 58 ms against 3.5 ms).
    Odd H or W are padded with one zero where SAME would put it, so the split stays exact.
    """
    padding = (
        [(0, 0)]
        + [_even_padding(u.shape[axis], kernel.shape[axis - 1]) for axis in (1, 2)]
        + [(0, 0)]
    )
    return _strided_conv_2x_even(jnp.pad(u, padding), kernel)


def conv_transpose_2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """t(x, K) = s(·, K)ᵀ x, the stride-2 SAME transposed convolution: [B, 2H, 2W, Cout].

    x: [B, H, W, Cin], any H, W >= 1; kernel: [kh, kw, Cout, Cin], kh, kw >= 2, the kernel of
    the strided conv s that this op transposes. Equals
    `lax.conv_transpose(x, kernel, (2, 2), "SAME", transpose_kernel=True)` and the VJP of
    `strided_conv_2x` in its input. x and kernel must share a dtype, which the output keeps.
    Reverse-mode only (a `jax.custom_vjp`): `jax.grad` and `jax.vjp` work, at any order;
    `jax.jvp` and `jax.jacfwd` do not.
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(
            f"conv_transpose_2x takes x [B, H, W, Cin] and kernel [kh, kw, Cout, Cin], got "
            f"x.shape={x.shape}, kernel.shape={kernel.shape}; reshape extra leading axes into "
            "B or jax.vmap over them"
        )
    if kernel.shape[3] != x.shape[3]:
        raise ValueError(
            f"kernel [kh, kw, Cout, Cin] has Cin={kernel.shape[3]} but x has {x.shape[3]} "
            f"channels (x.shape={x.shape}, kernel.shape={kernel.shape})"
        )
    if min(kernel.shape[:2]) < 2:
        raise ValueError(
            f"kernel_size {kernel.shape[:2]} is below 2, so some output pixels would meet no "
            "tap; use at least 2x2 (4x4 is the default)"
        )
    if x.dtype != kernel.dtype:
        raise TypeError(
            f"x is {x.dtype} but kernel is {kernel.dtype}; cast one of them explicitly "
            "(Upsample2x does this through its dtype field)"
        )
    return _conv_transpose_2x(x, kernel)


def _transposed_lecun_normal(stride: int = 2) -> nn.initializers.Initializer:
    """LeCun normal over the fan-in of one output pixel of t, for K [kh, kw, Cout, Cin].

    The fan-in axis is Cin (axis -1), not axis -2 as `nn.initializers.lecun_normal()` assumes.
    At stride 2 an output pixel meets kh·kw/4 taps (on average for odd k), so
    fan_in = kh·kw·Cin/4 and Var K = 4/(kh·kw·Cin): unit-variance inputs give unit-variance outputs.
    """
    return nn.initializers.variance_scaling(
        float(stride * stride), "fan_in", "truncated_normal", in_axis=-1, out_axis=-2
    )


class Downsample2x(nn.Module):
    """Learned 2x downsampling: strided_conv_2x plus bias. x [B, H, W, C] ->
    [B, ceil(H / 2), ceil(W / 2), features].

    `nn.Conv(features, (k, k), strides=(2, 2), padding="SAME")` with the same parameters
    (names, shapes, initialisation), whose input gradient avoids XLA:CPU's slow path (see
    strided_conv_2x). `dtype` is the computation dtype (None: the input's dtype).
    """

    features: int
    kernel_size: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
            jnp.float32,
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        dtype = x.dtype if self.dtype is None else self.dtype
        y = strided_conv_2x(x.astype(dtype), kernel.astype(dtype))
        return y + bias.astype(dtype)


class Upsample2x(nn.Module):
    """Learned 2x upsampling: conv_transpose_2x plus bias. x [B, H, W, C] -> [B, 2H, 2W, features].

    A drop-in for `nn.ConvTranspose(features, (k, k), strides=(2, 2), padding="SAME")` that
    trains several times faster on XLA:CPU (see the module docstring). Parameters are float32;
    `dtype` is the computation dtype (None: the input's dtype), to which kernel, bias and x are
    cast.
    """

    features: int
    kernel_size: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            _transposed_lecun_normal(),
            (self.kernel_size, self.kernel_size, self.features, x.shape[-1]),
            jnp.float32,
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        dtype = x.dtype if self.dtype is None else self.dtype
        y = conv_transpose_2x(x.astype(dtype), kernel.astype(dtype))
        return y + bias.astype(dtype)
