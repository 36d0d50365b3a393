"""Encoders and decoders: output types and shapes for every size, posterior and likelihood."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import base
from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models import LOG_VAR_RANGE, VAE, make_model

LIKELIHOOD_TYPES = {
    "bernoulli": L.Bernoulli,
    "gaussian": L.Gaussian,
    "gaussian_learned": L.Gaussian,
    "gaussian_optimal": L.GaussianOptimalScale,
    "discretized_logistic": L.DiscretizedLogistic,
}


def tiny_model_config(**overrides):
    config = base.get_config().model
    config.channels = (4, 8)
    config.hidden = (16,)
    config.latent_dim = 3
    config.update(overrides)
    return config


def apply(model, x):
    key = jax.random.key(0)
    params = model.init(key, x, key)
    return params, model.apply(params, x, key)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv", "mlp"])
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3), (128, 128, 1)])
def test_output_shapes_for_every_image_size(kind, image_shape):
    model = make_model(tiny_model_config(kind=kind), image_shape)
    x = jnp.zeros((2,) + image_shape)
    _, out = apply(model, x)
    assert out.posterior.mean.shape == (2, 3)
    assert out.z.shape == (2, 3)
    assert out.likelihood.mean().shape == (2,) + image_shape


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOOD_TYPES))
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_decoder_returns_the_configured_likelihood_with_finite_log_prob(likelihood, kind):
    model = make_model(tiny_model_config(kind=kind, likelihood=likelihood), (16, 16, 3))
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)) / 255.0, jnp.float32)
    params, out = apply(model, x)
    assert type(out.likelihood) is LIKELIHOOD_TYPES[likelihood]
    log_prob = out.likelihood.log_prob(x)
    assert log_prob.shape == (2,) and np.all(np.isfinite(np.asarray(log_prob)))
    mean = np.asarray(out.likelihood.mean())
    assert mean.min() >= 0.0 and mean.max() <= 1.0
    has_scale_param = "log_scale" in str(jax.tree_util.tree_structure(params))
    assert has_scale_param == (likelihood == "gaussian_learned")


@pytest.mark.slow
def test_fixed_gaussian_scale_comes_from_config():
    model = make_model(tiny_model_config(likelihood="gaussian", gaussian_scale=0.25), (8, 8, 1))
    _, out = apply(model, jnp.zeros((1, 8, 8, 1)))
    np.testing.assert_allclose(np.exp(np.asarray(out.likelihood.log_scale)), 0.25, rtol=1e-6)


@pytest.mark.slow
def test_learned_gaussian_scale_starts_at_one_and_never_falls_below_its_floor():
    model = make_model(tiny_model_config(kind="mlp", likelihood="gaussian_learned"), (8, 8, 2))
    x = jnp.zeros((1, 8, 8, 2))
    params, out = apply(model, x)
    np.testing.assert_allclose(np.exp(np.asarray(out.likelihood.log_scale)), 1.0, rtol=1e-6)
    pushed_down = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.full_like(p, -50.0) if path[-1].key == "log_scale" else p, params
    )
    out = model.apply(pushed_down, x, jax.random.key(0))
    sigma = np.exp(np.asarray(out.likelihood.log_scale))
    assert sigma.shape == (2,)
    np.testing.assert_allclose(sigma, L.MIN_GAUSSIAN_SCALE, rtol=1e-6)


@pytest.mark.slow
def test_full_posterior_has_lower_triangular_factor_with_positive_diagonal():
    model = make_model(tiny_model_config(posterior="full", latent_dim=4), (16, 16, 1))
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(5, 16, 16, 1)), jnp.float32)
    _, out = apply(model, x)
    assert isinstance(out.posterior, D.FullGaussian)
    tril = np.asarray(out.posterior.scale_tril)
    assert tril.shape == (5, 4, 4)
    np.testing.assert_array_equal(np.triu(tril, 1), 0.0)
    assert np.all(np.diagonal(tril, axis1=-2, axis2=-1) > 0)
    assert np.all(np.isfinite(np.asarray(D.kl_divergence(out.posterior, D.standard_normal(4)))))


@pytest.mark.slow
def test_encoder_log_variance_is_clipped_to_documented_range():
    model = make_model(tiny_model_config(), (8, 8, 1))
    x = jnp.ones((1, 8, 8, 1))
    params = model.init(jax.random.key(0), x, jax.random.key(0))
    # Scale every parameter up so the raw log-variance output is far outside the range.
    huge = jax.tree.map(lambda p: p * 1e4, params)
    posterior = model.apply(huge, x * 1e3, method=VAE.encode)
    log_var = np.asarray(posterior.log_var)
    assert np.all(log_var >= LOG_VAR_RANGE[0]) and np.all(log_var <= LOG_VAR_RANGE[1])
    assert np.any(np.abs(log_var) == LOG_VAR_RANGE[1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_leading_sample_axes_pass_through_encode_and_decode(kind):
    model = make_model(tiny_model_config(kind=kind), (16, 16, 1))
    x = jnp.asarray(np.random.default_rng(2).uniform(size=(3, 16, 16, 1)), jnp.float32)
    params, _ = apply(model, x)
    z = jnp.asarray(np.random.default_rng(3).normal(size=(5, 3, 3)), jnp.float32)  # [K, B, k]
    batched = model.apply(params, z, method=VAE.decode).mean()
    one_by_one = jnp.stack([model.apply(params, zk, method=VAE.decode).mean() for zk in z])
    assert batched.shape == (5, 3, 16, 16, 1)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(one_by_one), rtol=1e-5, atol=1e-6)
    posterior = model.apply(params, jnp.stack([x, x]), method=VAE.encode)
    assert posterior.mean.shape == (2, 3, 3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_bfloat16_compute_keeps_float32_params_posterior_and_likelihood(kind):
    config = tiny_model_config(kind=kind, likelihood="discretized_logistic")
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)) / 255.0, jnp.float32)
    key = jax.random.key(0)
    model_f32 = make_model(config, (16, 16, 3))
    model_bf16 = make_model(config, (16, 16, 3), "bfloat16")
    # Jitted: op-by-op dispatch would compile every operation on its own (far slower on CPU).
    params = jax.jit(model_f32.init)(key, x, key)
    bf16_params = jax.eval_shape(model_bf16.init, key, x, key)
    assert jax.tree.structure(bf16_params) == jax.tree.structure(params)
    out_f32 = jax.jit(model_f32.apply)(params, x, key)
    out_bf16 = jax.jit(model_bf16.apply)(params, x, key)

    for leaf in jax.tree.leaves((out_bf16.posterior, out_bf16.likelihood, out_bf16.z)):
        assert leaf.dtype == jnp.float32
    grads = jax.jit(jax.grad(lambda p: -model_bf16.apply(p, x, key).likelihood.log_prob(x).sum()))(
        params
    )
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    # bfloat16 keeps 8 significant bits: relative error about 2^-8 per op.
    np.testing.assert_allclose(out_bf16.posterior.mean, out_f32.posterior.mean, atol=0.05)
    log_p_f32 = out_f32.likelihood.log_prob(x)
    np.testing.assert_allclose(out_bf16.likelihood.log_prob(x), log_p_f32, rtol=0.02)
    assert not np.array_equal(out_bf16.posterior.mean, out_f32.posterior.mean)  # it did use bf16
