"""Output heads: dense features -> the Gaussian posterior q(z|x), and raw decoder maps -> the
likelihood p(x|z) named by model.likelihood. Both heads compute in float32."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vae_jax import distributions as D
from vae_jax import likelihoods as L

# Encoder log-variances are clipped to this range: σ from e^-5 to e^5 (about 0.007 to 150) keeps
# exp(log_var) and the KL's exp(-log_var) finite in float32 whatever the encoder outputs.
LOG_VAR_RANGE = (-10.0, 10.0)
# Smallest diagonal entry of a full-covariance Cholesky factor (after softplus).
MIN_SCALE = 1e-4
# Floor of the discretized-logistic log-scale: at e^-8 one 8-bit bin of width 1/255 already holds
# tanh(e^8 / 1020) = 99.4 % of the mass (PixelCNN++ uses -7 on data in [-1, 1], twice as wide).
MIN_LOGISTIC_LOG_SCALE = -8.0


# model.likelihood values whose log p(x|z) is a probability of 8-bit images: their bounds are
# reported in bits/dim.
EIGHT_BIT_LIKELIHOODS = ("discretized_logistic", "discretized_mix_logistic")


class GaussianHead(nn.Module):
    """Dense features [N, F] -> a diagonal or full-covariance Gaussian over [N, k]."""

    latent_dim: int
    posterior: str

    @nn.compact
    def __call__(self, h: jax.Array) -> D.Gaussian:
        k = self.latent_dim
        mean = nn.Dense(k, name="mean")(h)
        if self.posterior == "diag":
            log_var = jnp.clip(nn.Dense(k, name="log_var")(h), *LOG_VAR_RANGE)
            return D.DiagGaussian(mean, log_var)
        diagonal = jax.nn.softplus(nn.Dense(k, name="scale_diag")(h)) + MIN_SCALE
        rows, cols = np.tril_indices(k, -1)
        off_diagonal = nn.Dense(len(rows), name="scale_off_diag")(h)
        scale_tril = jnp.zeros(h.shape[:-1] + (k, k), h.dtype).at[..., rows, cols].set(off_diagonal)
        scale_tril = scale_tril + diagonal[..., :, None] * jnp.eye(k, dtype=h.dtype)
        return D.FullGaussian(mean, scale_tril)


def raw_outputs(likelihood: str, channels: int, mixture_components: int) -> int:
    """Decoder output maps per pixel of an image with `channels` channels: one per channel, or
    (loc, log_scale) per channel for the discretized logistic, or for the mixture of K of them
    K logits, K (loc, log_scale) per channel and K coefficients per channel pair j < c."""
    if likelihood == "discretized_logistic":
        return 2 * channels
    if likelihood == "discretized_mix_logistic":
        pairs = channels * (channels - 1) // 2
        return mixture_components * (1 + 2 * channels + pairs)
    return channels


class LikelihoodHead(nn.Module):
    """Raw decoder output [..., H, W, C·n] -> the likelihood object named by `likelihood`."""

    likelihood: str
    gaussian_scale: float = 0.1
    image_channels: int = 1  # read by discretized_mix_logistic only
    mixture_components: int = 10

    @nn.compact
    def __call__(self, raw: jax.Array) -> L.Likelihood:
        if self.likelihood == "bernoulli":
            return L.Bernoulli(raw)
        if self.likelihood == "gaussian":
            return L.Gaussian(raw, jnp.full((), math.log(self.gaussian_scale), raw.dtype))
        if self.likelihood == "gaussian_learned":
            # One learned σ per image channel (σ-VAE, Rybkin et al. 2021), starting at σ = 1.
            # σ = σ_min + e^θ: a smooth floor, so θ keeps a gradient wherever it goes (a hard
            # max(σ, σ_min) would freeze a θ that went below). θ keeps the name log_scale so
            # checkpoints from before the floor still restore (their σ moves up by σ_min).
            theta = self.param(
                "log_scale",
                nn.initializers.constant(math.log1p(-L.MIN_GAUSSIAN_SCALE)),
                (raw.shape[-1],),
            )
            return L.Gaussian(raw, jnp.logaddexp(theta, math.log(L.MIN_GAUSSIAN_SCALE)))
        if self.likelihood == "gaussian_optimal":
            return L.GaussianOptimalScale(raw)
        if self.likelihood == "discretized_logistic":
            loc, log_scale = jnp.split(raw, 2, axis=-1)
            return L.DiscretizedLogistic(loc, jnp.maximum(log_scale, MIN_LOGISTIC_LOG_SCALE))
        if self.likelihood == "discretized_mix_logistic":
            return mix_logistic(raw, self.image_channels, self.mixture_components)
        raise ValueError(f"unknown likelihood {self.likelihood!r}")


def mix_logistic(raw: jax.Array, channels: int, components: int) -> L.DiscretizedMixLogistic:
    """Raw maps [..., H, W, raw_outputs] -> the mixture of `components` discretised logistics
    over pixels of `channels` channels: coefficients of the pairs j < c squashed to (−1, 1) by
    tanh as in PixelCNN++, zeros elsewhere."""
    k, c = components, channels
    rows, cols = np.tril_indices(c, -1)
    logits, loc, log_scale, pairs = jnp.split(raw, np.cumsum([k, c * k, c * k]), axis=-1)
    lead = raw.shape[:-1]
    coefficients = jnp.zeros(lead + (c, c, k), raw.dtype)
    coefficients = coefficients.at[..., rows, cols, :].set(pairs.reshape(lead + (len(rows), k)))
    return L.DiscretizedMixLogistic(
        logits=logits,
        loc=loc.reshape(lead + (c, k)),
        log_scale=jnp.maximum(log_scale.reshape(lead + (c, k)), MIN_LOGISTIC_LOG_SCALE),
        coefficients=jnp.tanh(coefficients),
    )
