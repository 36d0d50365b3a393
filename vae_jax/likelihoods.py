"""Decoder likelihoods p(x|z) over images.

Images are float NHWC in [0, 1]. `log_prob(x)` sums over the pixel axes (the last three,
[H, W, C]) and returns one value per example in nats, so leading sample and batch axes pass
through: x [..., H, W, C] -> [...]. `mean()` is an image in [0, 1]: the expectation E[x] for the
Bernoulli and the discretized logistic, the location clipped to [0, 1] for the Gaussians (whose
expectation can leave the unit interval). `sample(key)` draws x ~ p(x|z) with the parameters'
shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

LOG_2PI = math.log(2.0 * math.pi)
PIXEL_AXES = (-3, -2, -1)
NUM_LEVELS = 256  # 8-bit intensities
BIN_WIDTH = 1.0 / (NUM_LEVELS - 1)  # one 8-bit intensity level on [0, 1] data
# Floor of the Gaussian likelihoods' σ. A density times the bin width approximates the probability
# of an 8-bit level; at σ = w/√(2π) the peak density 1/(σ√(2π)) is exactly 1/w, so above the floor
# that probability never exceeds 1 and each pixel adds at most ln 255 = 5.5 nats. Without it, a
# decoder that reproduces pixels exactly (binary shapes, binarised MNIST) sends σ -> 0 and
# log p(x|z) -> +∞.
MIN_GAUSSIAN_SCALE = BIN_WIDTH / math.sqrt(2.0 * math.pi)  # 0.00156


def _sum_pixels(values: jax.Array) -> jax.Array:
    return jnp.sum(values, axis=PIXEL_AXES)


def _shape(*params: jax.Array) -> tuple[int, ...]:
    return jnp.broadcast_shapes(*(jnp.shape(p) for p in params))


@struct.dataclass
class Bernoulli:
    """Independent Bernoulli pixels. logits: [..., H, W, C]."""

    logits: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Σ x·logits − softplus(logits), the negative binary cross-entropy: [...]."""
        return _sum_pixels(x * self.logits - jax.nn.softplus(self.logits))

    def mean(self) -> jax.Array:
        """E[x] = σ(logits), the probability of each pixel being 1: [..., H, W, C]."""
        return jax.nn.sigmoid(self.logits)

    def sample(self, key: jax.Array) -> jax.Array:
        """x ~ p(x|z), each pixel 1 with probability σ(logits), else 0: [..., H, W, C].

        Drawn as [l < logits] with l standard logistic, which has exactly that probability and
        needs no sigmoid (so no rounding of σ near 0 or 1).
        """
        noise = jax.random.logistic(key, self.logits.shape, self.logits.dtype)
        return (noise < self.logits).astype(self.logits.dtype)


@struct.dataclass
class Gaussian:
    """Independent Gaussian pixels N(loc, exp(log_scale)²).

    loc: [..., H, W, C]; log_scale broadcasts against it (a scalar for a fixed scale,
    [C] or [H, W, C] for a learned one, [..., 1, 1, 1] for one per example).
    """

    loc: jax.Array
    log_scale: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Σ −½((x − μ)/σ)² − ln σ − ½ ln 2π: [...]."""
        standardized = (x - self.loc) * jnp.exp(-self.log_scale)
        return _sum_pixels(-0.5 * jnp.square(standardized) - self.log_scale - 0.5 * LOG_2PI)

    def mean(self) -> jax.Array:
        """The location μ clipped to [0, 1] (the Gaussian's own mean μ may leave the unit
        interval): [..., H, W, C]."""
        return jnp.clip(self.loc, 0.0, 1.0)

    def sample(self, key: jax.Array) -> jax.Array:
        """x = μ + σ ε with ε ~ N(0, I), the raw Gaussian draw: not clipped, so it leaves
        [0, 1] where μ ± σ does. [..., H, W, C] (loc and log_scale broadcast)."""
        noise = jax.random.normal(key, _shape(self.loc, self.log_scale), self.loc.dtype)
        return self.loc + jnp.exp(self.log_scale) * noise


@struct.dataclass
class GaussianOptimalScale:
    """Gaussian pixels N(loc, σ²) whose σ is the maximum-likelihood one for the image scored: the
    optimal σ-VAE (Rybkin et al. 2021), here with one σ per example.

        σ²(x) = max(mean over pixels of (x − μ)², MIN_GAUSSIAN_SCALE²)

    log_prob(x) is the profile likelihood max_σ log N(x; μ, σ²) (below the floor, at the floor).
    Because σ is fitted to x it is not a normalised density of x: its ELBO and IWAE numbers are a
    training objective, not likelihoods comparable with the other models'. loc: [..., H, W, C].
    """

    loc: jax.Array

    def fitted(self, x: jax.Array) -> Gaussian:
        """The Gaussian with σ fitted to images x: [..., H, W, C] -> log_scale [..., 1, 1, 1]."""
        mse = jnp.mean(jnp.square(x - self.loc), axis=PIXEL_AXES, keepdims=True)
        return Gaussian(self.loc, 0.5 * jnp.log(jnp.maximum(mse, MIN_GAUSSIAN_SCALE**2)))

    def log_prob(self, x: jax.Array) -> jax.Array:
        """−(D/2)(ln 2πσ² + mse/σ²), D = H·W·C, with σ = σ(x): [...].

        Differentiated through σ(x) as written: at the optimum ∂/∂σ = 0, so the gradient is the
        one with σ held fixed, (D/2σ²)·∂mse, a mean-squared-error gradient scaled by 1/σ².
        """
        return self.fitted(x).log_prob(x)

    def mean(self) -> jax.Array:
        """The location μ clipped to [0, 1]: [..., H, W, C]."""
        return jnp.clip(self.loc, 0.0, 1.0)

    def sample(self, key: jax.Array) -> jax.Array:
        """Not defined: σ exists only given an image."""
        del key
        raise TypeError(
            "model.likelihood='gaussian_optimal' has no σ until it scores an image (σ is fitted "
            "to x); sample from .fitted(x), or use .mean()"
        )


def _log_bin_probability(x: jax.Array, loc: jax.Array, log_scale: jax.Array) -> jax.Array:
    """log P(x) of each value x on the 8-bit grid under a logistic(loc, e^log_scale) discretised
    to bins of width 1/255, the edge bins extended to ±∞ (shapes broadcast).

    An interior bin uses σ(a) − σ(b) = σ(a) σ(−b) (1 − e^(b−a)), which is accurate in float32
    even when both sigmoids are close to 0 or to 1.
    """
    inv_scale = jnp.exp(-log_scale)
    upper = (x - loc + 0.5 * BIN_WIDTH) * inv_scale
    lower = (x - loc - 0.5 * BIN_WIDTH) * inv_scale
    log_cdf_upper = jax.nn.log_sigmoid(upper)
    log_survival_lower = jax.nn.log_sigmoid(-lower)
    log_bin = log_cdf_upper + log_survival_lower + jnp.log(-jnp.expm1(-BIN_WIDTH * inv_scale))
    return jnp.where(
        x < 0.5 * BIN_WIDTH,
        log_cdf_upper,
        jnp.where(x > 1.0 - 0.5 * BIN_WIDTH, log_survival_lower, log_bin),
    )


def _logistic_mean(loc: jax.Array, log_scale: jax.Array) -> jax.Array:
    """E[x] of the discretised logistic (see _log_bin_probability), in [0, 1].

    Summed by parts, E[x] = w Σ_{j=1}^{255} P(x ≥ j w) with P(x ≥ j w) = σ((μ − (j − ½) w)/s):
    one saturating sigmoid per bin edge and no differences of CDFs. The edges are a loop, so
    memory stays that of `loc`.
    """
    loc, log_scale = jnp.broadcast_arrays(loc, log_scale)
    inv_scale = jnp.exp(-log_scale)

    def add_survival(j, total):
        edge = (j - 0.5) * BIN_WIDTH
        return total + jax.nn.sigmoid((loc - edge) * inv_scale)

    total = jax.lax.fori_loop(1, NUM_LEVELS, add_survival, jnp.zeros_like(loc))
    return total * BIN_WIDTH


def _logistic_sample(key: jax.Array, loc: jax.Array, log_scale: jax.Array) -> jax.Array:
    """A draw of the discretised logistic on the 8-bit grid: μ + s·l (l standard logistic)
    rounded to the nearest level and clipped to [0, 1], which lands in each bin with exactly
    its probability."""
    noise = jax.random.logistic(key, _shape(loc, log_scale), loc.dtype)
    levels = jnp.round((loc + jnp.exp(log_scale) * noise) * (NUM_LEVELS - 1))
    return jnp.clip(levels, 0, NUM_LEVELS - 1) / (NUM_LEVELS - 1)


@struct.dataclass
class DiscretizedLogistic:
    """Logistic pixels discretised to 256 bins of width 1/255 on [0, 1] (PixelCNN++, VDVAE).

    P(x) = σ((x + w/2 − μ)/s) − σ((x − w/2 − μ)/s) with w = 1/255; the bin at 0 extends to −∞
    and the bin at 1 to +∞, so the 256 probabilities sum to one.
    loc, log_scale: [..., H, W, C] (log_scale may broadcast).
    """

    loc: jax.Array
    log_scale: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Σ log P(x) over pixels for x on the 8-bit grid {0, 1/255, ..., 1}: [...]."""
        return _sum_pixels(_log_bin_probability(x, self.loc, self.log_scale))

    def mean(self) -> jax.Array:
        """E[x] = Σ_k (k/255) P(k/255) over the 256 levels: [..., H, W, C], in [0, 1].

        Not the location μ: with μ ≥ 1 and a huge scale (half the mass in each edge bin) E[x] is
        about ½ while μ clipped is 1."""
        return _logistic_mean(self.loc, self.log_scale)

    def sample(self, key: jax.Array) -> jax.Array:
        """x ~ p(x|z) on the 8-bit grid {0, 1/255, ..., 1}: [..., H, W, C] (loc and log_scale
        broadcast)."""
        return _logistic_sample(key, self.loc, self.log_scale)


@struct.dataclass
class DiscretizedMixLogistic:
    """A mixture of K discretised logistics per pixel with channel-autoregressive means
    (PixelCNN++, Salimans et al. 2017; VDVAE), on [0, 1] data with 8-bit bins.

    Component k of pixel (h, w): P_k(x) = Π_c DL(x_c; μ_kc + Σ_{j<c} a_kcj x_j, s_kc), DL the
    discretised logistic of DiscretizedLogistic (edge bins to ±∞); P(x) = Σ_k π_k P_k(x).

    logits:       [..., H, W, K]       log π up to a constant
    loc:          [..., H, W, C, K]    μ
    log_scale:    [..., H, W, C, K]    ln s
    coefficients: [..., H, W, C, C, K] a_kcj, read below the diagonal (j < c) only
    """

    logits: jax.Array
    loc: jax.Array
    log_scale: jax.Array
    coefficients: jax.Array

    def _component_locs(self, x: jax.Array) -> jax.Array:
        """μ_kc + Σ_{j<c} a_kcj x_j for pixels x [..., H, W, C]: [..., H, W, C, K]."""
        below = jnp.tril(jnp.ones(self.coefficients.shape[-3:-1], self.loc.dtype), -1)
        shift = jnp.einsum("...cjk,cj,...j->...ck", self.coefficients, below, x)
        return self.loc + shift

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Σ over pixels of log Σ_k π_k P_k(x) for x on the 8-bit grid: [...]."""
        log_bins = _log_bin_probability(x[..., None], self._component_locs(x), self.log_scale)
        log_mix = jax.nn.log_softmax(self.logits, axis=-1) + jnp.sum(log_bins, axis=-2)
        return jnp.sum(jax.nn.logsumexp(log_mix, axis=-1), axis=(-2, -1))

    def mean(self) -> jax.Array:
        """An image in [0, 1]: Σ_k π_k E_k[x], each component's channels in order with the
        earlier channels at their component means. Exact for one channel; for RGB it is the
        mean of the linearised autoregression (E[x_c | x_<c] is not linear at the edge bins)."""
        weights = jax.nn.softmax(self.logits, axis=-1)
        channels = self.loc.shape[-2]
        means = []  # [..., H, W, K] per channel
        for c in range(channels):
            loc = self.loc[..., c, :]
            for j in range(c):
                loc = loc + self.coefficients[..., c, j, :] * means[j]
            means.append(_logistic_mean(loc, self.log_scale[..., c, :]))
        return jnp.sum(weights[..., None, :] * jnp.stack(means, axis=-2), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        """x ~ p(x|z) on the 8-bit grid: a component k ~ π per pixel, then each channel from
        its discretised logistic given the channels drawn before: [..., H, W, C]."""
        component_key, *channel_keys = jax.random.split(key, 1 + self.loc.shape[-2])
        component = jax.random.categorical(component_key, self.logits, axis=-1)
        one_hot = jax.nn.one_hot(component, self.logits.shape[-1], dtype=self.loc.dtype)

        def pick(values):  # [..., H, W, K] -> [..., H, W], the drawn component's
            return jnp.sum(values * one_hot, axis=-1)

        drawn = []
        for c, channel_key in enumerate(channel_keys):
            loc = pick(self.loc[..., c, :])
            for j in range(c):
                loc = loc + pick(self.coefficients[..., c, j, :]) * drawn[j]
            drawn.append(_logistic_sample(channel_key, loc, pick(self.log_scale[..., c, :])))
        return jnp.stack(drawn, axis=-1)


Likelihood = (
    Bernoulli | Gaussian | GaussianOptimalScale | DiscretizedLogistic | DiscretizedMixLogistic
)
