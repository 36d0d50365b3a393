"""Pixel likelihoods against float64 numpy densities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import likelihoods as L


def numpy_sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def test_bernoulli_log_prob_matches_float64_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(2, 4, 5, 3))
    x = rng.uniform(size=logits.shape)  # the formula also holds for fractional targets
    probs = numpy_sigmoid(logits)
    want = np.sum(x * np.log(probs) + (1 - x) * np.log1p(-probs), axis=(1, 2, 3))
    got = np.asarray(L.Bernoulli(jnp.asarray(logits, jnp.float32)).log_prob(x.astype(np.float32)))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(L.Bernoulli(jnp.asarray(logits)).mean()), probs, rtol=1e-6
    )


@pytest.mark.parametrize("log_scale_shape", [(), (3,), (4, 5, 3)])
def test_gaussian_log_prob_matches_float64_density(log_scale_shape):
    rng = np.random.default_rng(1)
    loc = rng.uniform(size=(2, 4, 5, 3))
    log_scale = rng.uniform(-3, 0, size=log_scale_shape)
    x = rng.uniform(size=loc.shape)
    sigma = np.exp(log_scale)
    density = np.exp(-0.5 * ((x - loc) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    want = np.sum(np.log(density), axis=(1, 2, 3))
    likelihood = L.Gaussian(jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32))
    np.testing.assert_allclose(
        np.asarray(likelihood.log_prob(x.astype(np.float32))), want, rtol=1e-5
    )


def numpy_discretized_logistic_probs(loc, scale):
    """P(x = i/255) for i in 0..255 as float64 differences of logistic CDFs: [..., 256]."""
    edges = (np.arange(257) - 0.5) / 255.0
    cdf = numpy_sigmoid((edges - loc[..., None]) / scale[..., None])
    cdf[..., 0], cdf[..., -1] = 0.0, 1.0
    return np.diff(cdf, axis=-1)


def all_bins_log_prob(loc, log_scale, dtype):
    """log P of every 8-bit value under each of N one-pixel (loc, log_scale) pairs: [N, 256]."""
    values = (jnp.arange(256, dtype=dtype) / 255.0).reshape(256, 1, 1, 1, 1)
    likelihood = L.DiscretizedLogistic(
        jnp.asarray(loc, dtype).reshape(-1, 1, 1, 1),
        jnp.asarray(log_scale, dtype).reshape(-1, 1, 1, 1),
    )
    return likelihood.log_prob(values).T


def test_discretized_logistic_matches_float64_cdf_differences_and_sums_to_one():
    rng = np.random.default_rng(2)
    loc = rng.uniform(-0.2, 1.2, size=64)
    log_scale = rng.uniform(-7, 0, size=64)
    want = numpy_discretized_logistic_probs(loc, np.exp(log_scale))
    np.testing.assert_allclose(want.sum(-1), 1.0, rtol=1e-12)
    with jax.enable_x64(True):
        got64 = np.exp(np.asarray(all_bins_log_prob(loc, log_scale, jnp.float64)))
    np.testing.assert_allclose(got64, want, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(got64.sum(-1), 1.0, rtol=1e-10)


def test_discretized_logistic_float32_is_accurate_where_both_cdfs_saturate():
    """A bin far in the tail, where σ(a) − σ(b) would cancel to zero in float32."""
    loc, log_scale = np.array([0.0, 1.0, 0.5]), np.array([-6.0, -6.0, -6.5])
    got = np.asarray(all_bins_log_prob(loc, log_scale, jnp.float32))
    assert np.all(np.isfinite(got))
    with jax.enable_x64(True):
        want = np.asarray(all_bins_log_prob(loc, log_scale, jnp.float64))
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_discretized_logistic_log_prob_sums_pixels_per_example():
    rng = np.random.default_rng(3)
    loc = rng.uniform(size=(2, 3, 3, 3))
    log_scale = rng.uniform(-4, -1, size=(3,))
    x = rng.integers(0, 256, size=loc.shape) / 255.0
    probs = numpy_discretized_logistic_probs(loc, np.broadcast_to(np.exp(log_scale), loc.shape))
    index = np.rint(x * 255).astype(int)
    want = np.log(np.take_along_axis(probs, index[..., None], -1)[..., 0]).sum((1, 2, 3))
    likelihood = L.DiscretizedLogistic(
        jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32)
    )
    np.testing.assert_allclose(
        np.asarray(likelihood.log_prob(x.astype(np.float32))), want, rtol=1e-5
    )


@pytest.mark.parametrize("cls", [L.Gaussian, L.DiscretizedLogistic])
def test_mean_is_an_image_in_unit_interval(cls):
    loc = jnp.linspace(-1.0, 2.0, 24).reshape(1, 2, 4, 3)
    mean = np.asarray(cls(loc, jnp.zeros(())).mean())
    assert mean.min() == 0.0 and mean.max() == 1.0
    np.testing.assert_allclose(mean, np.clip(np.asarray(loc), 0, 1))
