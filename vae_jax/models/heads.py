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


def outputs_per_channel(likelihood: str) -> int:
    """Decoder output maps per image channel: (loc, log_scale) for the discretized logistic."""
    return 2 if likelihood == "discretized_logistic" else 1


class LikelihoodHead(nn.Module):
    """Raw decoder output [..., H, W, C·n] -> the likelihood object named by `likelihood`."""

    likelihood: str
    gaussian_scale: float = 0.1

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
        raise ValueError(f"unknown likelihood {self.likelihood!r}")
