"""conv_transpose_2x / Upsample2x against autodiff of lax.conv_transpose, and strided_conv_2x /
Downsample2x against autodiff of lax's strided conv and nn.Conv.

Reference for the transposed conv: `lax.conv_transpose(x, K, (2, 2), "SAME",
transpose_kernel=True)`, which the first test also checks against the definition, the VJP in u
of the strided conv s(u, K) under lax's own autodiff.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from vae_jax.models import layers

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def reference(x, kernel):
    """The stride-2 SAME transposed conv via lax: x [B, H, W, Cin], K [kh, kw, Cout, Cin]."""
    return lax.conv_transpose(
        x, kernel, (2, 2), "SAME", dimension_numbers=DIMENSION_NUMBERS, transpose_kernel=True
    )


def lax_strided_conv(u, kernel):
    """s(u, K), the stride-2 SAME conv, differentiated by lax: u [B, H, W, C], K HWIO."""
    return lax.conv_general_dilated(u, kernel, (2, 2), "SAME", dimension_numbers=DIMENSION_NUMBERS)


def adjoint_of_strided_conv(x, kernel):
    """sᵀ x: the VJP in u of the strided conv s(u, K), at cotangent x."""
    batch, height, width, _ = x.shape
    u = jnp.zeros((batch, 2 * height, 2 * width, kernel.shape[2]), x.dtype)
    _, vjp = jax.vjp(lambda u: lax_strided_conv(u, kernel), u)
    return vjp(x)[0]


def random_inputs(seed, batch, height, width, cin, cout, kernel_shape, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, height, width, cin)), dtype)
    kernel = jnp.asarray(rng.normal(size=(*kernel_shape, cout, cin)), dtype)
    return x, kernel


def assert_close(got, want, rel, what):
    """Max |got - want| within rel · max |want|, with a message that says by how much."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    error, scale = np.max(np.abs(got - want)), np.max(np.abs(want))
    assert error <= rel * scale, f"{what}: max error {error:.3g} > {rel:g} x max |want| {scale:.3g}"


SHAPES = [  # (H, W, kernel [kh, kw])
    (7, 7, (4, 4)),  # 7 -> 14, the odd step of image_size 28
    (4, 6, (4, 4)),
    (1, 1, (4, 4)),
    (5, 6, (3, 3)),
    (4, 3, (2, 2)),
    (6, 5, (5, 5)),
    (5, 4, (3, 4)),
]


@pytest.mark.parametrize("height,width,kernel_shape", SHAPES)
def test_forward_equals_lax_conv_transpose_and_adjoint_of_strided_conv(height, width, kernel_shape):
    x, kernel = random_inputs(0, 2, height, width, 3, 5, kernel_shape)
    want = reference(x, kernel)
    got = jax.jit(layers.conv_transpose_2x)(x, kernel)
    assert got.shape == (2, 2 * height, 2 * width, 5)
    assert_close(got, want, 1e-5, "conv_transpose_2x vs lax.conv_transpose")
    assert_close(adjoint_of_strided_conv(x, kernel), want, 1e-6, "sᵀx vs lax.conv_transpose")


@pytest.mark.parametrize("height,width,kernel_shape", SHAPES)
def test_gradients_equal_autodiff_of_lax_conv_transpose(height, width, kernel_shape):
    x, kernel = random_inputs(1, 2, height, width, 3, 5, kernel_shape)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(2, 2 * height, 2 * width, 5)))

    def loss(op):
        return lambda x, kernel: jnp.sum(weights * jnp.sin(op(x, kernel)))

    got = jax.jit(jax.grad(loss(layers.conv_transpose_2x), argnums=(0, 1)))(x, kernel)
    want = jax.jit(jax.grad(loss(reference), argnums=(0, 1)))(x, kernel)
    assert_close(got[0], want[0], 1e-5, "d/dx")
    assert_close(got[1], want[1], 1e-5, "d/dkernel")


def test_gradient_has_no_lhs_dilated_convolution():
    """The slow path on XLA:CPU is an lhs-dilated conv; the custom VJP must avoid it."""
    x, kernel = random_inputs(3, 2, 4, 4, 3, 5, (4, 4))
    grad = jax.grad(lambda x, k: jnp.sum(layers.conv_transpose_2x(x, k) ** 2), argnums=(0, 1))
    hlo = jax.jit(grad).lower(x, kernel).as_text()
    dilations = re.findall(r"lhs_dilate = \[(\d+), (\d+)\]", hlo)
    assert dilations, "no convolution found in the lowered gradient"
    assert all(d == ("1", "1") for d in dilations), f"lhs dilations in the gradient: {dilations}"


def test_vmap_and_jit_match_a_loop_over_the_mapped_axis():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, 2, 7, 7, 4)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 4, 4, 6, 4)), jnp.float32)
    got = jax.jit(jax.vmap(layers.conv_transpose_2x))(x, kernel)
    for i in range(3):
        assert_close(got[i], reference(x[i], kernel[i]), 1e-5, f"vmap slice {i}")

    def loss(x, kernel):
        return jnp.sum(jnp.cos(layers.conv_transpose_2x(x, kernel)))

    def reference_loss(x, kernel):
        return jnp.sum(jnp.cos(reference(x, kernel)))

    got_dk = jax.jit(jax.vmap(jax.grad(loss, argnums=1)))(x, kernel)
    for i in range(3):
        assert_close(
            got_dk[i],
            jax.grad(reference_loss, argnums=1)(x[i], kernel[i]),
            1e-5,
            f"vmap d/dkernel slice {i}",
        )


def test_bfloat16_inputs_give_bfloat16_outputs_and_gradients():
    x, kernel = random_inputs(5, 2, 7, 7, 8, 4, (4, 4), jnp.bfloat16)

    @jax.jit
    def forward_and_gradients(x, kernel):
        y, vjp = jax.vjp(layers.conv_transpose_2x, x, kernel)
        return y, *vjp(jnp.ones_like(y))

    y, dx, dkernel = forward_and_gradients(x, kernel)
    assert (y.dtype, dx.dtype, dkernel.dtype) == (jnp.bfloat16,) * 3
    x32, kernel32 = x.astype(jnp.float32), kernel.astype(jnp.float32)
    assert_close(y, reference(x32, kernel32), 2e-2, "bfloat16 forward vs float32")


def test_mismatched_dtypes_raise_and_say_to_cast():
    x, kernel = random_inputs(6, 1, 4, 4, 3, 2, (4, 4))
    with pytest.raises(TypeError, match="cast one of them explicitly"):
        layers.conv_transpose_2x(x.astype(jnp.bfloat16), kernel)


def test_upsample2x_computes_in_bfloat16_with_float32_params():
    module = layers.Upsample2x(features=6, dtype=jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 7, 7, 3)), jnp.float32)
    params = jax.jit(module.init)(jax.random.key(0), x)["params"]
    assert params["kernel"].shape == (4, 4, 6, 3) and params["bias"].shape == (6,)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y = jax.jit(module.apply)({"params": params}, x)
    assert (y.shape, y.dtype) == ((2, 14, 14, 6), jnp.bfloat16)
    want = reference(x, params["kernel"]) + params["bias"]
    assert_close(y, want, 2e-2, "Upsample2x in bfloat16 vs float32 reference")


@pytest.mark.slow
def test_upsample2x_init_keeps_unit_variance_away_from_the_border():
    """Kernel init is LeCun normal over an output pixel's fan-in, kh·kw·Cin/4."""
    x = jax.random.normal(jax.random.key(1), (8, 16, 16, 64))
    module = layers.Upsample2x(features=64)
    y, _ = jax.jit(module.init_with_output)(jax.random.key(2), x)
    variance = float(jnp.var(y[:, 2:-2, 2:-2]))
    assert abs(variance - 1.0) < 0.15, f"output variance {variance:.3f}, expected about 1"


STRIDED_SHAPES = [  # (H, W, kernel [kh, kw]) of the strided conv's input
    (8, 8, (4, 4)),
    (7, 7, (4, 4)),  # 7 -> 4, image_size 28's odd stage
    (1, 1, (4, 4)),
    (5, 6, (3, 3)),
    (6, 5, (5, 5)),
    (5, 3, (2, 3)),
]


@pytest.mark.parametrize("height,width,kernel_shape", STRIDED_SHAPES)
def test_strided_conv_and_its_gradients_equal_lax(height, width, kernel_shape):
    u, kernel = random_inputs(8, 2, height, width, 3, 5, kernel_shape)
    kernel = jnp.swapaxes(kernel, 2, 3)  # HWIO: 3 -> 5 channels
    out_shape = (2, -(-height // 2), -(-width // 2), 5)
    weights = jnp.asarray(np.random.default_rng(9).normal(size=out_shape))

    def loss(op):
        return lambda u, kernel: jnp.sum(weights * jnp.sin(op(u, kernel)))

    got = jax.jit(layers.strided_conv_2x)(u, kernel)
    assert_close(got, lax_strided_conv(u, kernel), 1e-6, "strided_conv_2x vs lax")
    got = jax.jit(jax.grad(loss(layers.strided_conv_2x), argnums=(0, 1)))(u, kernel)
    want = jax.jit(jax.grad(loss(lax_strided_conv), argnums=(0, 1)))(u, kernel)
    assert_close(got[0], want[0], 1e-5, "d/du")
    assert_close(got[1], want[1], 1e-5, "d/dkernel")


KERNEL_GRAD_SHAPES = [  # (H, W of u, even; kernel [kh, kw]; Cu, Cg)
    (8, 8, (4, 4), 3, 5),
    (6, 4, (3, 3), 4, 2),
    (4, 6, (5, 5), 2, 3),
    (6, 8, (2, 3), 3, 4),
    (34, 34, (4, 4), 16, 4),  # where _strided_conv_kernel_grad takes the phase form
]


@pytest.mark.parametrize("form", ["_kernel_grad_per_tap", "_kernel_grad_by_phases"])
@pytest.mark.parametrize("height,width,kernel_shape,cu,cg", KERNEL_GRAD_SHAPES)
def test_both_forms_of_the_weight_gradient_equal_lax(height, width, kernel_shape, cu, cg, form):
    rng = np.random.default_rng(11)
    u = jnp.asarray(rng.normal(size=(2, height, width, cu)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, height // 2, width // 2, cg)), jnp.float32)
    kernel = jnp.zeros((*kernel_shape, cu, cg), jnp.float32)
    _, kernel_vjp = jax.vjp(lambda k: lax_strided_conv(u, k), kernel)
    got = jax.jit(getattr(layers, form), static_argnums=2)(u, g, kernel.shape)
    assert_close(got, kernel_vjp(g)[0], 1e-5, form)


def test_strided_conv_gradient_has_no_lhs_dilated_convolution():
    u, kernel = random_inputs(10, 2, 8, 8, 5, 3, (4, 4))
    kernel = jnp.swapaxes(kernel, 2, 3)  # HWIO: 5 -> 3 channels
    grad = jax.grad(lambda u, k: jnp.sum(layers.strided_conv_2x(u, k) ** 2), argnums=(0, 1))
    hlo = jax.jit(grad).lower(u, kernel).as_text()
    dilations = re.findall(r"lhs_dilate = \[(\d+), (\d+)\]", hlo)
    assert dilations, "no convolution found in the lowered gradient"
    assert all(d == ("1", "1") for d in dilations), f"lhs dilations in the gradient: {dilations}"


def test_downsample2x_is_nn_conv_with_the_same_parameters():
    x = jnp.asarray(np.random.default_rng(11).normal(size=(2, 7, 6, 3)), jnp.float32)
    conv = nn.Conv(8, (4, 4), strides=(2, 2), padding="SAME")
    module = layers.Downsample2x(features=8)
    params = jax.jit(module.init)(jax.random.key(0), x)["params"]
    conv_params = jax.jit(conv.init)(jax.random.key(0), x)["params"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, conv_params)
    assert_close(params["kernel"], conv_params["kernel"], 0.0, "same initialisation")
    y = jax.jit(module.apply)({"params": params}, x)
    assert y.shape == (2, 4, 3, 8)
    assert_close(y, conv.apply({"params": params}, x), 1e-6, "Downsample2x vs nn.Conv")
