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


@pytest.mark.parametrize(
    "likelihood",
    [
        lambda loc: L.Gaussian(loc, jnp.zeros(())),
        lambda loc: L.GaussianOptimalScale(loc),
    ],
    ids=["gaussian", "gaussian_optimal"],
)
def test_gaussian_mean_is_the_location_clipped_to_unit_interval(likelihood):
    loc = jnp.linspace(-1.0, 2.0, 24).reshape(1, 2, 4, 3)
    mean = np.asarray(likelihood(loc).mean())
    assert mean.min() == 0.0 and mean.max() == 1.0
    np.testing.assert_allclose(mean, np.clip(np.asarray(loc), 0, 1))


def numpy_discretized_logistic_mean(loc, log_scale):
    """Σ_k (k/255) P(k/255) in float64: [...]."""
    return numpy_discretized_logistic_probs(loc, np.exp(log_scale)) @ (np.arange(256) / 255.0)


def test_discretized_logistic_mean_is_the_expectation_over_the_256_levels():
    rng = np.random.default_rng(4)
    loc = rng.uniform(-0.5, 1.5, size=(4, 5, 6, 3))
    log_scale = rng.uniform(-9, 3, size=loc.shape)
    want = numpy_discretized_logistic_mean(loc, log_scale)
    with jax.enable_x64(True):
        got64 = np.asarray(L.DiscretizedLogistic(jnp.asarray(loc), jnp.asarray(log_scale)).mean())
    np.testing.assert_allclose(got64, want, rtol=0, atol=1e-12)
    likelihood = L.DiscretizedLogistic(
        jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32)
    )
    got = np.asarray(likelihood.mean())
    assert got.shape == loc.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)


def test_discretized_logistic_mean_is_half_grey_when_loc_above_one_has_a_huge_scale():
    """A decoder for dark-on-white digits may put loc >= 1 with a huge scale: half the mass in
    each edge bin. The mean image is then grey (~0.5, showing the digit by contrast), not the
    blank white that clip(loc) = 1 gives."""
    loc, log_scale = np.array([1.0, 1.3, 2.0]), np.array([6.0, 8.0, 10.0])
    edge_mass = numpy_discretized_logistic_probs(loc, np.exp(log_scale))[:, [0, -1]]
    np.testing.assert_allclose(edge_mass, 0.5, atol=0.01)  # the situation described
    want = numpy_discretized_logistic_mean(loc, log_scale)
    got = np.asarray(
        L.DiscretizedLogistic(
            jnp.asarray(loc, jnp.float32).reshape(3, 1, 1, 1),
            jnp.asarray(log_scale, jnp.float32).reshape(3, 1, 1, 1),
        ).mean()
    ).ravel()
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got, 0.5, atol=0.01)


def draws(likelihood, num: int, seed: int = 0) -> np.ndarray:
    """`num` independent x ~ p(x|z): [num, ...parameter shape]."""
    keys = jax.random.split(jax.random.key(seed), num)
    return np.asarray(jax.vmap(likelihood.sample)(keys))


# Monte Carlo checks: a frequency or mean must lie within 5 standard errors of its true value
# (a false alarm about once in 1.7 million per compared number).
MC_DRAWS = 20_000
MC_STANDARD_ERRORS = 5.0


def frequency_tolerance(p: np.ndarray) -> np.ndarray:
    """5 standard errors of a frequency of probability p, plus two draws for rare outcomes
    (N·p << 1), where the normal approximation behind "5 standard errors" fails."""
    return MC_STANDARD_ERRORS * np.sqrt(p * (1 - p) / MC_DRAWS) + 2 / MC_DRAWS


def test_bernoulli_sample_frequencies_match_probabilities():
    logits = jnp.asarray([-12.0, -3.0, -0.5, 0.0, 1.0, 4.0, 12.0]).reshape(1, 1, 7, 1)
    x = draws(L.Bernoulli(logits), MC_DRAWS)
    assert x.shape == (MC_DRAWS, 1, 1, 7, 1) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}
    p = numpy_sigmoid(np.asarray(logits, np.float64))
    np.testing.assert_array_less(np.abs(x.mean(0, dtype=np.float64) - p), frequency_tolerance(p))


def test_gaussian_sample_has_the_distribution_mean_and_scale_without_clipping():
    loc = jnp.asarray([0.0, 0.3, 1.0]).reshape(1, 1, 3)
    log_scale = jnp.log(jnp.asarray([0.1, 0.5, 0.02]))  # [C]
    x = draws(L.Gaussian(loc, log_scale), MC_DRAWS)
    assert x.shape == (MC_DRAWS, 1, 1, 3)
    sigma = np.exp(np.asarray(log_scale))
    mean_tolerance = MC_STANDARD_ERRORS * sigma / np.sqrt(MC_DRAWS)
    np.testing.assert_array_less(
        np.abs(x.mean(0, dtype=np.float64).ravel() - np.asarray(loc).ravel()), mean_tolerance
    )
    # The standard error of a sample standard deviation is about σ / √(2n).
    std_tolerance = MC_STANDARD_ERRORS * sigma / np.sqrt(2 * MC_DRAWS)
    np.testing.assert_array_less(np.abs(x.std(0, dtype=np.float64).ravel() - sigma), std_tolerance)
    assert x.min() < 0.0 and x.max() > 1.0  # the raw draw, not clipped to [0, 1]


def test_gaussian_optimal_scale_cannot_sample_without_an_image():
    with pytest.raises(TypeError, match="fitted"):
        L.GaussianOptimalScale(jnp.zeros((1, 2, 2, 1))).sample(jax.random.key(0))


def test_discretized_logistic_sample_frequencies_match_bin_probabilities():
    loc = np.array([0.5, 0.02, 1.3, 0.7])
    log_scale = np.array([-4.0, -3.0, 2.0, -7.0])
    likelihood = L.DiscretizedLogistic(
        jnp.asarray(loc, jnp.float32).reshape(4, 1, 1, 1),
        jnp.asarray(log_scale, jnp.float32).reshape(4, 1, 1, 1),
    )
    x = draws(likelihood, MC_DRAWS).reshape(MC_DRAWS, 4)
    levels = np.rint(x * 255.0)
    np.testing.assert_allclose(x * 255.0, levels, atol=1e-4)  # on the 8-bit grid
    assert x.min() == 0.0 and x.max() == 1.0
    frequencies = np.stack([np.bincount(levels[:, i].astype(int), minlength=256) for i in range(4)])
    frequencies = frequencies / MC_DRAWS
    p = numpy_discretized_logistic_probs(loc, np.exp(log_scale))  # [4, 256]
    np.testing.assert_array_less(np.abs(frequencies - p), frequency_tolerance(p))
    values = np.arange(256) / 255.0
    mean, std = p @ values, np.sqrt(p @ values**2 - (p @ values) ** 2)
    mean_tolerance = MC_STANDARD_ERRORS * std / np.sqrt(MC_DRAWS)
    np.testing.assert_array_less(np.abs(x.mean(0, dtype=np.float64) - mean), mean_tolerance)


def numpy_gaussian_log_prob(x, loc, sigma):
    """Σ over [H, W, C] of log N(x; loc, σ²) in float64: [B]."""
    log_density = -0.5 * ((x - loc) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    return np.broadcast_to(log_density, np.broadcast_shapes(x.shape, loc.shape)).sum((-3, -2, -1))


def test_gaussian_optimal_log_prob_is_the_gaussian_at_sigma_squared_mse_floored():
    rng = np.random.default_rng(5)
    loc = rng.uniform(size=(3, 4, 5, 2))
    x = loc + np.array([0.2, 0.01, 0.0002]).reshape(3, 1, 1, 1) * rng.normal(size=loc.shape)
    mse = np.mean((x - loc) ** 2, axis=(1, 2, 3))
    assert mse[-1] < L.MIN_GAUSSIAN_SCALE**2 < mse[0]  # one example below the floor
    sigma = np.sqrt(np.maximum(mse, L.MIN_GAUSSIAN_SCALE**2)).reshape(3, 1, 1, 1)
    want = numpy_gaussian_log_prob(x, loc, sigma)
    with jax.enable_x64(True):
        got64 = np.asarray(L.GaussianOptimalScale(jnp.asarray(loc)).log_prob(jnp.asarray(x)))
    np.testing.assert_allclose(got64, want, rtol=1e-12)
    got = L.GaussianOptimalScale(jnp.asarray(loc, jnp.float32)).log_prob(x.astype(np.float32))
    assert got.shape == (3,)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_gaussian_optimal_log_prob_is_the_maximum_over_sigma():
    rng = np.random.default_rng(6)
    loc = rng.uniform(size=(2, 3, 3, 3))
    x = np.clip(loc + 0.1 * rng.normal(size=loc.shape), 0, 1)
    sigmas = np.geomspace(L.MIN_GAUSSIAN_SCALE, 10.0, 2001)
    on_grid = np.stack([numpy_gaussian_log_prob(x, loc, s) for s in sigmas])  # [S, B]
    with jax.enable_x64(True):
        optimal = np.asarray(L.GaussianOptimalScale(jnp.asarray(loc)).log_prob(jnp.asarray(x)))
    assert np.all(on_grid <= optimal + 1e-9), np.max(on_grid - optimal)
    # The grid's best σ is 0.5 % from the optimum at most, within 1e-3 nats of it.
    np.testing.assert_allclose(on_grid.max(0), optimal, atol=1e-3)


def random_mixture(rng, batch_shape, channels, components, dtype=jnp.float32):
    """A DiscretizedMixLogistic with random parameters over pixels [*batch_shape, C]."""
    return L.DiscretizedMixLogistic(
        logits=jnp.asarray(rng.normal(size=batch_shape + (components,)), dtype),
        loc=jnp.asarray(rng.uniform(-0.2, 1.2, batch_shape + (channels, components)), dtype),
        log_scale=jnp.asarray(rng.uniform(-5, -1, batch_shape + (channels, components)), dtype),
        coefficients=jnp.asarray(
            rng.uniform(-1, 1, batch_shape + (channels, channels, components)), dtype
        ),
    )


def numpy_mix_logistic_log_prob(mixture, x):
    """PixelCNN++'s discretized_mix_logistic_loss per pixel in float64 numpy on [0, 1] data
    (bin half-width 1/510, edge bins to ±inf): x [..., C] -> [...]."""
    logits, loc, log_scale, coefficients = (
        np.asarray(a, np.float64)
        for a in (mixture.logits, mixture.loc, mixture.log_scale, mixture.coefficients)
    )
    x = np.asarray(x, np.float64)
    channels = x.shape[-1]
    total = np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))  # [..., K]
    for c in range(channels):
        mean = loc[..., c, :] + sum(coefficients[..., c, j, :] * x[..., j, None] for j in range(c))
        centered = x[..., c, None] - mean
        inv_s = np.exp(-log_scale[..., c, :])
        cdf_plus = numpy_sigmoid((centered + 1 / 510) * inv_s)
        cdf_min = numpy_sigmoid((centered - 1 / 510) * inv_s)
        edge_low = np.broadcast_to(x[..., c, None] < 0.001, cdf_plus.shape)
        edge_high = np.broadcast_to(x[..., c, None] > 0.999, cdf_plus.shape)
        probability = np.where(
            edge_low, cdf_plus, np.where(edge_high, 1 - cdf_min, cdf_plus - cdf_min)
        )
        with np.errstate(divide="ignore"):  # a component far from x: log 0 = -inf
            total = total + np.log(probability)
    peak = total.max(-1, keepdims=True)
    return (peak + np.log(np.exp(total - peak).sum(-1, keepdims=True)))[..., 0]


def test_mix_logistic_matches_float64_pixelcnn_formula():
    rng = np.random.default_rng(3)
    mixture = random_mixture(rng, (2, 3, 4), channels=3, components=5)
    levels = rng.integers(0, 256, size=(2, 3, 4, 3))
    levels[0, 0, 0] = (0, 255, 17)  # both edge bins
    x = levels / 255.0
    want = numpy_mix_logistic_log_prob(mixture, x).sum(axis=(1, 2))
    got = np.asarray(mixture.log_prob(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_mix_logistic_probabilities_of_all_rgb_values_sum_to_one():
    """All 256³ values of one RGB pixel, in float64, 16 red levels per call."""
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        mixture = random_mixture(rng, (1, 1), channels=3, components=2, dtype=jnp.float64)
        green, blue = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")

        @jax.jit
        def total_probability(red_levels):
            values = (
                jnp.stack(
                    [
                        jnp.broadcast_to(red_levels[:, None], (16, 65536)),
                        jnp.broadcast_to(green.reshape(-1), (16, 65536)),
                        jnp.broadcast_to(blue.reshape(-1), (16, 65536)),
                    ],
                    axis=-1,
                ).reshape(-1, 1, 1, 3)
                / 255.0
            )
            return jnp.sum(jnp.exp(mixture.log_prob(values)))

        total = sum(float(total_probability(jnp.arange(r, r + 16))) for r in range(0, 256, 16))
    np.testing.assert_allclose(total, 1.0, atol=1e-9)


def test_mix_logistic_samples_follow_its_probabilities():
    """One grey pixel: the frequencies of 200,000 draws against P(x) (total variation below
    0.01; its sampling noise is about 0.003 here), and the mean against Σ x P(x)."""
    rng = np.random.default_rng(5)
    mixture = random_mixture(rng, (1, 1), channels=1, components=3)
    keys = jax.random.split(jax.random.key(0), 200_000)
    draws = np.asarray(jax.vmap(mixture.sample)(keys)).reshape(-1)
    counts = np.bincount(np.round(draws * 255).astype(int), minlength=256) / len(draws)
    values = (np.arange(256) / 255.0).reshape(256, 1, 1, 1)
    probabilities = np.exp(np.asarray(mixture.log_prob(jnp.asarray(values, jnp.float32))))
    assert 0.5 * np.abs(counts - probabilities).sum() < 0.01
    mean = float(np.asarray(mixture.mean()).reshape(()))
    np.testing.assert_allclose(mean, (np.arange(256) / 255.0) @ probabilities, atol=1e-5)
