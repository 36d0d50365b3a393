"""Gaussian densities and KL divergences against float64 numpy references and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import distributions as D


def random_cholesky(rng: np.random.Generator, batch: tuple[int, ...], k: int) -> np.ndarray:
    """Cholesky factors of well-conditioned covariances A Aᵀ/k + ½ I: [*batch, k, k]."""
    a = rng.normal(size=batch + (k, k))
    cov = a @ np.swapaxes(a, -1, -2) / k + 0.5 * np.eye(k)
    return np.linalg.cholesky(cov)


def numpy_kl(mean_p, cov_p, mean_q, cov_q) -> np.ndarray:
    """Dense float64 KL(p||q) with an explicit inverse and slogdet: the independent reference."""
    k = mean_p.shape[-1]
    inv_q = np.linalg.inv(cov_q)
    diff = (mean_q - mean_p)[..., None]
    trace = np.trace(inv_q @ cov_p, axis1=-2, axis2=-1)
    quad = (np.swapaxes(diff, -1, -2) @ inv_q @ diff)[..., 0, 0]
    logdet_q = np.linalg.slogdet(cov_q)[1]
    logdet_p = np.linalg.slogdet(cov_p)[1]
    return 0.5 * (trace + quad - k + logdet_q - logdet_p)


def numpy_log_density(z, mean, cov) -> np.ndarray:
    k = mean.shape[-1]
    diff = (z - mean)[..., None]
    quad = (np.swapaxes(diff, -1, -2) @ np.linalg.inv(cov) @ diff)[..., 0, 0]
    return -0.5 * (quad + k * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1])


def make_pair(rng, kind: str, batch, k):
    """A distribution of `kind` and its float64 dense (mean, covariance)."""
    mean = rng.normal(size=batch + (k,))
    if kind == "diag":
        log_var = rng.uniform(-1.5, 1.5, size=batch + (k,))
        cov = np.exp(log_var)[..., None] * np.eye(k)
        return D.DiagGaussian(jnp.asarray(mean), jnp.asarray(log_var)), mean, cov
    tril = random_cholesky(rng, batch, k)
    return (
        D.FullGaussian(jnp.asarray(mean), jnp.asarray(tril)),
        mean,
        tril @ np.swapaxes(tril, -1, -2),
    )


KINDS = ["diag", "full"]


@pytest.mark.parametrize("k", [1, 2, 5, 16])
@pytest.mark.parametrize("kind_p", KINDS)
@pytest.mark.parametrize("kind_q", KINDS)
def test_kl_matches_dense_float64_reference(k, kind_p, kind_q):
    rng = np.random.default_rng(k)
    with jax.enable_x64(True):
        p, mean_p, cov_p = make_pair(rng, kind_p, (3, 2), k)
        q, mean_q, cov_q = make_pair(rng, kind_q, (3, 2), k)
        got = np.asarray(D.kl_divergence(p, q))
    want = numpy_kl(mean_p, cov_p, mean_q, cov_q)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"KL({kind_p}||{kind_q}), k={k}")


@pytest.mark.parametrize("kind_p", KINDS)
@pytest.mark.parametrize("kind_q", KINDS)
def test_kl_float32_matches_float64_reference(kind_p, kind_q):
    rng = np.random.default_rng(7)
    p, mean_p, cov_p = make_pair(rng, kind_p, (4,), 8)
    q, mean_q, cov_q = make_pair(rng, kind_q, (4,), 8)
    p = jax.tree.map(lambda a: a.astype(jnp.float32), p)
    q = jax.tree.map(lambda a: a.astype(jnp.float32), q)
    got = np.asarray(D.kl_divergence(p, q))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, numpy_kl(mean_p, cov_p, mean_q, cov_q), rtol=1e-4)


def test_kl_broadcasts_batched_posterior_against_unbatched_prior():
    rng = np.random.default_rng(0)
    q, mean, cov = make_pair(rng, "full", (5,), 3)
    prior = D.standard_normal(3)
    got = np.asarray(D.kl_divergence(q, prior))
    want = numpy_kl(mean, cov, np.zeros(3), np.eye(3))
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_kl_of_distribution_with_itself_is_zero(kind):
    p, _, _ = make_pair(np.random.default_rng(1), kind, (6,), 5)
    np.testing.assert_allclose(np.asarray(D.kl_divergence(p, p)), 0.0, atol=1e-5)


@pytest.mark.parametrize("kind_p", KINDS)
@pytest.mark.parametrize("kind_q", KINDS)
def test_kl_is_nonnegative(kind_p, kind_q):
    rng = np.random.default_rng(2)
    p, _, _ = make_pair(rng, kind_p, (200,), 4)
    q, _, _ = make_pair(rng, kind_q, (200,), 4)
    assert np.all(np.asarray(D.kl_divergence(p, q)) >= -1e-6)


def test_diag_and_full_agree_when_covariance_is_diagonal():
    rng = np.random.default_rng(3)
    mean_p, mean_q = rng.normal(size=(2, 4, 6))
    log_var_p, log_var_q = rng.uniform(-2, 2, size=(2, 4, 6))
    diag_p, diag_q = D.DiagGaussian(mean_p, log_var_p), D.DiagGaussian(mean_q, log_var_q)
    full_p = D.FullGaussian(mean_p, diag_p.scale_tril())
    full_q = D.FullGaussian(mean_q, diag_q.scale_tril())
    reference = np.asarray(D.kl_divergence(diag_p, diag_q))
    for p, q in [(full_p, full_q), (diag_p, full_q), (full_p, diag_q)]:
        np.testing.assert_allclose(np.asarray(D.kl_divergence(p, q)), reference, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(full_p.log_prob(mean_q)), np.asarray(diag_p.log_prob(mean_q)), rtol=1e-5
    )


@pytest.mark.parametrize("kind_p", KINDS)
@pytest.mark.parametrize("kind_q", KINDS)
def test_kl_matches_monte_carlo_within_four_standard_errors(kind_p, kind_q):
    rng = np.random.default_rng(4)
    p, _, _ = make_pair(rng, kind_p, (), 3)
    q, _, _ = make_pair(rng, kind_q, (), 3)
    z = p.sample(jax.random.key(0), (100_000,))
    log_ratio = np.asarray(p.log_prob(z) - q.log_prob(z), np.float64)
    estimate = log_ratio.mean()
    standard_error = log_ratio.std() / np.sqrt(log_ratio.size)
    exact = float(D.kl_divergence(p, q))
    assert abs(estimate - exact) < 4 * standard_error, (estimate, exact, standard_error)


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_and_entropy_match_float64_density(kind):
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        p, mean, cov = make_pair(rng, kind, (3,), 4)
        z = rng.normal(size=(7, 3, 4))
        got_log_prob = np.asarray(p.log_prob(jnp.asarray(z)))
        got_entropy = np.asarray(p.entropy())
        got_cov = np.asarray(p.covariance())
        got_logdet = np.asarray(p.log_det_covariance())
    np.testing.assert_allclose(got_log_prob, numpy_log_density(z, mean, cov), rtol=1e-10)
    want_entropy = 0.5 * (4 * (1 + np.log(2 * np.pi)) + np.linalg.slogdet(cov)[1])
    np.testing.assert_allclose(got_entropy, want_entropy, rtol=1e-10)
    np.testing.assert_allclose(got_cov, cov, rtol=1e-10)
    np.testing.assert_allclose(got_logdet, np.linalg.slogdet(cov)[1], rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_samples_have_the_distribution_mean_and_covariance(kind):
    p, mean, cov = make_pair(np.random.default_rng(6), kind, (), 3)
    z = np.asarray(p.sample(jax.random.key(1), (200_000,)), np.float64)
    assert z.shape == (200_000, 3)
    np.testing.assert_allclose(z.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(z, rowvar=False), cov, atol=0.03)


def test_sample_is_reparameterised():
    """d/dμ of E[z] is the identity: gradients flow through the sample to the parameters."""
    key = jax.random.key(2)

    def mean_of_sum(mean):
        return jnp.sum(D.DiagGaussian(mean, jnp.zeros(3)).sample(key, (4,))) / 4

    np.testing.assert_allclose(np.asarray(jax.grad(mean_of_sum)(jnp.zeros(3))), np.ones(3))


@pytest.mark.slow
@pytest.mark.parametrize("log_var", [-20.0, -5.0, 0.0, 5.0, 20.0])
def test_kl_gradients_are_finite_over_log_var_range(log_var):
    prior = D.standard_normal(4)

    def kl(mean, lv):
        return jnp.sum(D.kl_divergence(D.DiagGaussian(mean, lv), prior))

    def kl_full(mean, lv):
        q = D.FullGaussian(mean, D.DiagGaussian(mean, lv).scale_tril())
        return jnp.sum(D.kl_divergence(q, prior))

    mean, lv = jnp.ones((2, 4)), jnp.full((2, 4), log_var)
    for fn in (kl, kl_full):
        grads = jax.grad(fn, argnums=(0, 1))(mean, lv)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in grads), (fn.__name__, log_var)
