"""Decoder likelihoods p(x|z) over images.

Images are float NHWC in [0, 1]. `log_prob(x)` sums over the pixel axes (the last three,
[H, W, C]) and returns one value per example in nats, so leading sample and batch axes pass
through: x [..., H, W, C] -> [...]. `mean()` is the expected image, in [0, 1].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

LOG_2PI = math.log(2.0 * math.pi)
PIXEL_AXES = (-3, -2, -1)
BIN_WIDTH = 1.0 / 255.0  # one 8-bit intensity level on [0, 1] data


def _sum_pixels(values: jax.Array) -> jax.Array:
    return jnp.sum(values, axis=PIXEL_AXES)


@struct.dataclass
class Bernoulli:
    """Independent Bernoulli pixels. logits: [..., H, W, C]."""

    logits: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Σ x·logits − softplus(logits), the negative binary cross-entropy: [...]."""
        return _sum_pixels(x * self.logits - jax.nn.softplus(self.logits))

    def mean(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits)


@struct.dataclass
class Gaussian:
    """Independent Gaussian pixels N(mean, exp(log_scale)²).

    mean: [..., H, W, C]; log_scale broadcasts against it (a scalar for a fixed scale,
    [C] or [H, W, C] for a learned one).
    """

    loc: jax.Array
    log_scale: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Σ −½((x − μ)/σ)² − ln σ − ½ ln 2π: [...]."""
        standardized = (x - self.loc) * jnp.exp(-self.log_scale)
        return _sum_pixels(-0.5 * jnp.square(standardized) - self.log_scale - 0.5 * LOG_2PI)

    def mean(self) -> jax.Array:
        return jnp.clip(self.loc, 0.0, 1.0)


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
        """Σ log P(x) over pixels for x on the 8-bit grid {0, 1/255, ..., 1}: [...].

        An interior bin uses σ(a) − σ(b) = σ(a) σ(−b) (1 − e^(b−a)), which is accurate in
        float32 even when both sigmoids are close to 0 or to 1.
        """
        inv_scale = jnp.exp(-self.log_scale)
        upper = (x - self.loc + 0.5 * BIN_WIDTH) * inv_scale
        lower = (x - self.loc - 0.5 * BIN_WIDTH) * inv_scale
        log_cdf_upper = jax.nn.log_sigmoid(upper)
        log_survival_lower = jax.nn.log_sigmoid(-lower)
        log_bin = log_cdf_upper + log_survival_lower + jnp.log(-jnp.expm1(-BIN_WIDTH * inv_scale))
        log_p = jnp.where(
            x < 0.5 * BIN_WIDTH,
            log_cdf_upper,
            jnp.where(x > 1.0 - 0.5 * BIN_WIDTH, log_survival_lower, log_bin),
        )
        return _sum_pixels(log_p)

    def mean(self) -> jax.Array:
        return jnp.clip(self.loc, 0.0, 1.0)


Likelihood = Bernoulli | Gaussian | DiscretizedLogistic
