"""The disentangling methods' regularisers (objectives.py) against independent references:
TC estimators against the exact TC of a finite mixture, DIP terms against numpy, FactorVAE's
discriminator learning to tell correlated codes from their permutation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from vae_jax import distributions as D
from vae_jax import objectives as O
from vae_jax import optim
from vae_jax.config import get_config
from vae_jax.models.discriminator import Discriminator
from vae_jax.train import DiscriminatorState, discriminator_update


def objective_config(**overrides):
    config = get_config().objective
    config.unlock()
    config.update(overrides)
    return config


def test_mss_weights_rows_sum_to_one_with_own_element_one_over_n():
    m, n = 8, 100
    weights = np.exp(np.asarray(O.mss_log_weights(m, n), np.float64))
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(weights), 1.0 / n, rtol=1e-6)
    # Column 0 is not special (the public code's strided assignment filled it with 1/N).
    assert np.isclose(weights[3, 0], 1.0 / (m - 1))
    stratum = (n - m + 1) / (n * (m - 1))
    np.testing.assert_allclose([weights[i, (i + 1) % m] for i in range(m)], stratum, rtol=1e-6)


def finite_mixture(rng, n=1024):
    """A "dataset" of n Gaussians q(z|x_n) over 3 correlated dimensions: the aggregate
    posterior q(z) = (1/n) Σ_n q(z|x_n) and its marginals are exact mixtures."""
    mixing = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, 0.5, 0.7]])
    means = rng.normal(size=(n, 3)) @ mixing.T
    log_var = np.full((n, 3), np.log(0.2**2))
    return means, log_var


def exact_tc(rng, means, log_var, num_samples=10_000):
    """E_q(z)[log q(z) − Σ_d log q(z_d)] by Monte Carlo over z ~ q(z), with exact mixture
    densities in float64; returns (TC, its standard error)."""
    n = len(means)
    rows = rng.integers(0, n, num_samples)
    z = means[rows] + np.exp(0.5 * log_var[rows]) * rng.normal(size=means[rows].shape)

    def log_ratio(z):  # log q(z) − Σ_d log q(z_d) of samples z [s, 3]
        log_density = -0.5 * (
            (z[:, None] - means[None]) ** 2 / np.exp(log_var[None])
            + log_var[None]
            + np.log(2 * np.pi)
        )  # [s, n, 3]
        log_q = logsumexp(log_density.sum(-1), axis=1) - np.log(n)
        return log_q - (logsumexp(log_density, axis=1) - np.log(n)).sum(-1)

    values = np.concatenate([log_ratio(chunk) for chunk in np.array_split(z, 20)])
    return values.mean(), values.std() / np.sqrt(num_samples)


def test_tc_estimators_approach_the_exact_total_correlation_as_the_batch_grows():
    # Measured with 400 batches per size (exact TC 0.819 ± 0.008 nats):
    #   M      16      64      256
    #   MWS  +0.91   +0.49   +0.15     bias of E[estimate]
    #   MSS  −0.37   −0.33   −0.10
    # Both shrink towards 0 as M grows (at M = N they are exact). Here with 120 batches.
    rng = np.random.default_rng(0)
    means, log_var = finite_mixture(rng)
    n = len(means)
    tc, tc_se = exact_tc(rng, means, log_var)
    assert 0.7 < tc < 0.95 and tc_se < 0.02

    def estimate(key, rows, log_weights):
        posterior = D.DiagGaussian(jnp.asarray(means)[rows], jnp.asarray(log_var)[rows])
        return O.tc_decomposition(posterior.sample(key), posterior, log_weights)["tc"]

    estimates = jax.jit(jax.vmap(estimate, in_axes=(0, 0, None)))  # over batches
    keys = jax.random.split(jax.random.key(0), 120)
    bias = {}
    for m in (16, 64, 256):
        for name, log_weights in (
            ("mws", O.mws_log_weights(m)),
            ("mss", O.mss_log_weights(m, n)),
        ):
            rows = np.stack([rng.permutation(n)[:m] for _ in range(120)])
            bias[name, m] = float(np.mean(estimates(keys, rows, log_weights))) - tc
    assert bias["mws", 16] > bias["mws", 64] > bias["mws", 256] > 0
    assert bias["mss", 16] < bias["mss", 256] < 0
    for name in ("mws", "mss"):
        assert abs(bias[name, 256]) < 0.25
        assert abs(bias[name, 256]) < abs(bias[name, 16]) - 0.2


def test_tc_decomposition_sums_to_the_monte_carlo_kl():
    # MI + TC + dim-wise KL = E_i[log q(z_i|x_i) − log p(z_i)], a one-sample KL estimate.
    rng = np.random.default_rng(1)
    posterior = D.DiagGaussian(
        jnp.asarray(rng.normal(size=(32, 4)), jnp.float32),
        jnp.asarray(rng.normal(size=(32, 4)) * 0.3 - 1.0, jnp.float32),
    )
    z = posterior.sample(jax.random.key(0))
    parts = O.tc_decomposition(z, posterior, O.mss_log_weights(32, 1000))
    expected = np.mean(
        np.asarray(posterior.log_prob(z)) - np.asarray(D.standard_normal(4).log_prob(z))
    )
    np.testing.assert_allclose(sum(float(v) for v in parts.values()), expected, rtol=1e-4)


@pytest.mark.parametrize("kind", ["dip_vae_i", "dip_vae_ii"])
def test_dip_terms_equal_their_numpy_formulas(kind):
    rng = np.random.default_rng(2)
    mean = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4))
    log_var = rng.normal(size=(50, 4)) * 0.5
    got = O.dip_terms(D.DiagGaussian(jnp.asarray(mean), jnp.asarray(log_var)), kind)
    covariance = np.cov(mean, rowvar=False, bias=True)
    if kind == "dip_vae_ii":
        covariance = covariance + np.diag(np.exp(log_var).mean(0))
    off = sum(covariance[i, j] ** 2 for i in range(4) for j in range(4) if i != j)
    diag = sum((covariance[i, i] - 1) ** 2 for i in range(4))
    np.testing.assert_allclose(float(got["dip_off_diagonal"]), off, rtol=1e-4)
    np.testing.assert_allclose(float(got["dip_diagonal"]), diag, rtol=1e-4)


@pytest.mark.parametrize(
    "kind, values, expected",
    [
        ("beta_tcvae", {"tc": 2.0, "mutual_info": 5.0, "dimwise_kl": 7.0}, (6.0 - 1.0) * 2.0),
        ("factor_vae", {"tc": 2.0}, 30.0 * 2.0),
        ("dip_vae_i", {"dip_off_diagonal": 0.5, "dip_diagonal": 0.25}, 3.0 * 0.5 + 7.0 * 0.25),
        ("dip_vae_ii", {"dip_off_diagonal": 0.5, "dip_diagonal": 0.25}, 3.0 * 0.5 + 7.0 * 0.25),
        ("beta_vae", {}, 0.0),
    ],
)
def test_each_kind_adds_its_weighted_regularizer_to_an_unweighted_elbo(kind, values, expected):
    # Rate 1.8 and distortion 15 on average; β weights the rate only for beta_vae.
    rate_per_dim = jnp.array([[0.2, 1.0, 0.0], [0.2, 2.0, 0.2]])
    rate = rate_per_dim.sum(-1)
    distortion = jnp.array([10.0, 20.0])
    terms = O.ElboTerms(rate, distortion, -(rate + distortion), rate_per_dim)
    config = objective_config(
        kind=kind, beta=6.0, factor_vae_gamma=30.0, dip_lambda_od=3.0, dip_lambda_d=7.0
    )
    values = {k: jnp.asarray(v) for k, v in values.items()}
    got = O.loss(terms, config, jnp.asarray(0), values)
    rate_weight = 6.0 if kind == "beta_vae" else 1.0
    np.testing.assert_allclose(float(got), 15.0 + rate_weight * 1.8 + expected, rtol=1e-6)


def test_permute_dims_permutes_each_column_independently():
    z = jnp.arange(200.0).reshape(50, 4)
    permuted = np.asarray(O.permute_dims(jax.random.key(0), z))
    for d in range(4):
        np.testing.assert_array_equal(np.sort(permuted[:, d]), np.asarray(z[:, d]))
    # Rows of z are arithmetic (z_d = 4 r + d); independent permutations break that.
    assert np.mean(np.ptp(permuted - np.arange(4.0), axis=1) == 0) < 0.2


def test_discriminator_learns_to_tell_correlated_codes_from_their_permutation():
    rng = np.random.default_rng(3)
    mixing = jnp.asarray([[1.0, 0.0], [1.0, 0.1]])  # correlation 0.995

    def codes(n):
        return jnp.asarray(rng.normal(size=(n, 2)), jnp.float32) @ mixing.T

    def accuracy(params, z):
        logits = Discriminator().apply(params, jnp.concatenate([z, O.permute_dims(key, z)]))
        return float(O.discriminator_loss(logits[: len(z)], logits[len(z) :])[1])

    key = jax.random.key(0)
    params = Discriminator().init(key, jnp.zeros((1, 2)))
    state = DiscriminatorState(params, optim.discriminator_optimizer().init(params))
    held_out = codes(1024)
    before = accuracy(params, held_out)
    update = jax.jit(discriminator_update)
    for step in range(100):
        state, _ = update(state, codes(64), jax.random.key(step))
    assert before < 0.65
    assert accuracy(state.params, held_out) > 0.85
    # The TC estimate E[logit_real − logit_permuted] on real codes is clearly positive.
    assert float(O.discriminator_tc(Discriminator().apply(state.params, held_out))) > 0.5


def test_discriminator_loss_clips_probabilities_to_1e6_like_disentanglement_lib():
    # disentanglement_lib clips the softmax to [1e-6, 1 − 1e-6] before the log. The second
    # real code and the first permuted one are confidently misclassified (p = e^-20 / (1 +
    # e^-20)): each adds −log 1e-6 = 13.8 nats instead of 20 and no gradient.
    logits_real = np.array([[1.0, 0.0], [0.0, 20.0], [0.5, -0.3]])
    logits_permuted = np.array([[20.0, 0.0], [-0.2, 0.4]])

    def reference(logits_real, logits_permuted):
        def probabilities(logits):
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return np.clip(e / e.sum(axis=1, keepdims=True), 1e-6, 1 - 1e-6)

        return -0.5 * (
            np.mean(np.log(probabilities(logits_real)[:, 0]))
            + np.mean(np.log(probabilities(logits_permuted)[:, 1]))
        )

    loss, accuracy = O.discriminator_loss(
        jnp.asarray(logits_real, jnp.float32), jnp.asarray(logits_permuted, jnp.float32)
    )
    gradient_real, gradient_permuted = jax.grad(
        lambda a, b: O.discriminator_loss(a, b)[0], argnums=(0, 1)
    )(jnp.asarray(logits_real, jnp.float32), jnp.asarray(logits_permuted, jnp.float32))

    assert float(loss) == pytest.approx(reference(logits_real, logits_permuted), rel=1e-5)
    assert float(accuracy) == pytest.approx(3 / 5)
    np.testing.assert_array_equal(np.asarray(gradient_real)[1], 0.0)
    np.testing.assert_array_equal(np.asarray(gradient_permuted)[0], 0.0)
    assert np.all(np.abs(np.asarray(gradient_real)[[0, 2]]) > 1e-3)
