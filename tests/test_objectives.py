"""ELBO terms, training-loss variants and the IWAE bound against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax import objectives as O
from vae_jax.config import get_config


def objective_config(**overrides):
    """The schema's objective section with `overrides`."""
    config = get_config().objective
    config.unlock()
    config.update(overrides)
    return config


def linear_gaussian_model(rng, data_dim=6, latent_dim=3, noise_std=0.3):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I): log p(x) and the posterior are analytic."""
    w = rng.normal(size=(data_dim, latent_dim))
    b = rng.normal(size=data_dim)
    return w, b, noise_std


def exact_posterior(w, b, noise_std, x):
    """q(z|x) = p(z|x) = N(Σ Wᵀ(x − b)/σ², Σ), Σ = (I + WᵀW/σ²)⁻¹, as a FullGaussian."""
    precision = np.eye(w.shape[1]) + w.T @ w / noise_std**2
    cov = np.linalg.inv(precision)
    mean = (x - b) @ w @ cov / noise_std**2
    return D.FullGaussian(jnp.asarray(mean), jnp.asarray(np.linalg.cholesky(cov)))


def log_evidence(w, b, noise_std, x):
    """log N(x; b, WWᵀ + σ²I) in float64."""
    cov = w @ w.T + noise_std**2 * np.eye(len(b))
    diff = x - b
    quad = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
    return -0.5 * (quad + len(b) * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1])


def decode(w, b, noise_std, z):
    """p(x|z) as a Gaussian likelihood over [..., 1, 1, D] "images"."""
    loc = jnp.einsum("ij,...j->...i", w, z)[..., None, None, :] + b
    return L.Gaussian(loc, jnp.log(noise_std))


@pytest.mark.slow
def test_elbo_equals_log_evidence_at_exact_posterior_of_linear_gaussian_model():
    """E_q[log p(x|z)] − KL(q||p) = log p(x) when q is the exact posterior (Monte Carlo, 4 SE)."""
    rng = np.random.default_rng(0)
    w, b, noise_std = linear_gaussian_model(rng)
    x = rng.normal(size=(5, 6)) * 2
    with jax.enable_x64(True):
        posterior = exact_posterior(w, b, noise_std, x)
        z = posterior.sample(jax.random.key(0), (20_000,))  # [S, B, k]
        terms = O.elbo_terms(
            posterior,
            D.standard_normal(3),
            decode(w, b, noise_std, z),
            jnp.asarray(x)[:, None, None, :],
        )
        elbo = np.asarray(terms.elbo)  # [S, B]
    standard_error = elbo.std(0) / np.sqrt(elbo.shape[0])
    error = np.abs(elbo.mean(0) - log_evidence(w, b, noise_std, x))
    assert np.all(error < 4 * standard_error), (error, standard_error)


def test_elbo_terms_are_kl_and_negative_log_likelihood():
    rng = np.random.default_rng(1)
    posterior = D.DiagGaussian(
        jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(4, 3)))
    )
    prior = D.standard_normal(3)
    likelihood = L.Bernoulli(jnp.asarray(rng.normal(size=(4, 2, 2, 1))))
    x = jnp.asarray(rng.integers(0, 2, size=(4, 2, 2, 1)).astype(np.float32))
    terms = O.elbo_terms(posterior, prior, likelihood, x)
    mean, var = np.asarray(posterior.mean), np.exp(np.asarray(posterior.log_var))
    want_rate_per_dim = 0.5 * (var + mean**2 - 1 - np.log(var))
    np.testing.assert_allclose(np.asarray(terms.rate_per_dim), want_rate_per_dim, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(terms.rate), want_rate_per_dim.sum(-1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(terms.distortion), -np.asarray(likelihood.log_prob(x)))
    np.testing.assert_allclose(
        np.asarray(terms.elbo), -(np.asarray(terms.rate) + np.asarray(terms.distortion))
    )


def fixed_terms():
    rate_per_dim = jnp.array([[0.1, 2.0, 0.0], [0.3, 1.0, 0.2]])
    rate = rate_per_dim.sum(-1)
    distortion = jnp.array([10.0, 20.0])
    return O.ElboTerms(
        rate=rate, distortion=distortion, elbo=-(rate + distortion), rate_per_dim=rate_per_dim
    )


def test_beta_vae_loss_weights_mean_rate_by_beta():
    terms = fixed_terms()  # mean distortion 15, mean rate 1.8
    got = O.loss(terms, objective_config(beta=4.0), jnp.asarray(7), {})
    np.testing.assert_allclose(float(got), 15.0 + 4.0 * 1.8, rtol=1e-6)


@pytest.mark.parametrize("step, weight", [(0, 0.0), (50, 0.5), (100, 1.0), (400, 1.0)])
def test_kl_warmup_is_linear_then_constant(step, weight):
    got = O.loss(
        fixed_terms(), objective_config(beta=2.0, kl_warmup_steps=100), jnp.asarray(step), {}
    )
    np.testing.assert_allclose(float(got), 15.0 + 2.0 * weight * 1.8, rtol=1e-6)


@pytest.mark.parametrize("step, target", [(0, 0.0), (250, 12.5), (1000, 50.0), (2000, 50.0)])
def test_capacity_loss_penalises_distance_to_annealed_capacity(step, target):
    config = objective_config(
        kind="annealed", capacity=50.0, capacity_steps=1000, capacity_gamma=100.0
    )
    got = O.loss(fixed_terms(), config, jnp.asarray(step), {})
    np.testing.assert_allclose(float(got), 15.0 + 100.0 * abs(1.8 - target), rtol=1e-6)


def test_free_bits_floor_each_dimension_of_batch_mean_rate():
    # Batch-mean KL per dimension: [0.2, 1.5, 0.1]; with λ = 0.5 -> 0.5 + 1.5 + 0.5.
    got = O.loss(fixed_terms(), objective_config(beta=1.0, free_bits=0.5), jnp.asarray(0), {})
    np.testing.assert_allclose(float(got), 15.0 + 2.5, rtol=1e-6)
    grads = jax.grad(lambda r: O.free_bits_rate(r, 0.5))(fixed_terms().rate_per_dim)
    np.testing.assert_allclose(np.asarray(grads), [[0, 0.5, 0], [0, 0.5, 0]])


def test_free_bits_with_full_covariance_posterior_is_refused():
    terms = fixed_terms().replace(rate_per_dim=None)
    with pytest.raises(ValueError, match="model.posterior='diag'"):
        O.loss(terms, objective_config(free_bits=0.5), jnp.asarray(0), {})


def test_iwae_with_one_sample_equals_elbo():
    rng = np.random.default_rng(2)
    log_px, log_pz, log_qz = rng.normal(size=(3, 1, 8)) * 50
    got = np.asarray(O.iwae_bound(log_px, log_pz, log_qz, axis=0))
    np.testing.assert_allclose(got, (log_px + log_pz - log_qz)[0], rtol=1e-6)


def test_iwae_matches_float64_logmeanexp_without_underflow():
    rng = np.random.default_rng(3)
    log_w = rng.normal(size=(8, 50)) * 3 - 5000.0  # exp underflows; logsumexp must not
    got = np.asarray(O.iwae_bound(jnp.asarray(log_w, jnp.float32), 0.0, 0.0, axis=1))
    shift = log_w.max(1, keepdims=True)
    want = shift[:, 0] + np.log(np.mean(np.exp(log_w - shift), axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.slow
def test_iwae_at_exact_posterior_equals_log_evidence_for_every_k():
    """With q = p(z|x) every importance weight equals p(x), so the bound is tight for any K."""
    rng = np.random.default_rng(4)
    w, b, noise_std = linear_gaussian_model(rng)
    x = rng.normal(size=(3, 6))
    with jax.enable_x64(True):
        posterior = exact_posterior(w, b, noise_std, x)
        z = posterior.sample(jax.random.key(1), (10,))  # [K, B, k]
        log_px = decode(w, b, noise_std, z).log_prob(jnp.asarray(x)[:, None, None, :])
        bound = np.asarray(
            O.iwae_bound(log_px, D.standard_normal(3).log_prob(z), posterior.log_prob(z))
        )
    np.testing.assert_allclose(bound, log_evidence(w, b, noise_std, x), rtol=1e-8)


@pytest.mark.slow
def test_iwae_with_prior_proposal_converges_to_log_evidence_from_below():
    rng = np.random.default_rng(5)
    w, b, noise_std = linear_gaussian_model(rng, data_dim=2, latent_dim=1, noise_std=1.0)
    x = rng.normal(size=(4, 2))
    prior = D.standard_normal(1)
    with jax.enable_x64(True):
        z = prior.sample(jax.random.key(2), (20_000, 4))
        log_px = decode(w, b, noise_std, z).log_prob(jnp.asarray(x)[:, None, None, :])
        log_pz = prior.log_prob(z)
        elbo = np.asarray(jnp.mean(O.iwae_bound(log_px[None], log_pz[None], log_pz[None]), 0))
        bound_k = np.asarray(O.iwae_bound(log_px, log_pz, log_pz))
    exact = log_evidence(w, b, noise_std, x)
    np.testing.assert_allclose(bound_k, exact, atol=0.02)
    assert np.all(elbo < bound_k - 0.1), (elbo, bound_k)  # K=1 averaged: the ELBO, strictly looser
