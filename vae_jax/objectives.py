"""The evidence lower bound, its training variants, and the importance-weighted bound.

Per-example terms have shape [B]; only `loss` reduces over the batch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax import distributions as D
from vae_jax.likelihoods import Likelihood


@struct.dataclass
class ElboTerms:
    """Per-example ELBO pieces in nats.

    rate:          KL(q(z|x) || p(z))                                [B]
    distortion:    −log p(x|z), z ~ q(z|x)                            [B]
    elbo:          −(distortion + rate)                               [B]
    rate_per_dim:  KL of each latent dimension when q and p are       [B, k]
                   diagonal; None for full covariances, where it is undefined.
    """

    rate: jax.Array
    distortion: jax.Array
    elbo: jax.Array
    rate_per_dim: jax.Array | None = None


def elbo_terms(
    posterior: D.Gaussian, prior: D.Gaussian, likelihood: Likelihood, x: jax.Array
) -> ElboTerms:
    """ELBO pieces for images x: [B, H, W, C] under a likelihood decoded from z ~ q(z|x).

    rate       = KL(q(z|x) || p(z))          [B]
    distortion = −log p(x|z)                 [B]
    elbo       = −(distortion + rate)        [B]
    """
    distortion = -likelihood.log_prob(x)
    if isinstance(posterior, D.DiagGaussian) and isinstance(prior, D.DiagGaussian):
        rate_per_dim = D.kl_per_dimension(posterior, prior)
        rate = jnp.sum(rate_per_dim, axis=-1)
    else:
        rate_per_dim = None
        rate = D.kl_divergence(posterior, prior)
    return ElboTerms(
        rate=rate, distortion=distortion, elbo=-(rate + distortion), rate_per_dim=rate_per_dim
    )


def kl_weight(step: jax.Array, beta: float, kl_warmup_steps: int) -> jax.Array:
    """β · min(1, step / kl_warmup_steps): the KL weight under a linear warm-up."""
    if kl_warmup_steps <= 0:
        return jnp.asarray(beta, jnp.float32)
    return beta * jnp.minimum(1.0, step / kl_warmup_steps)


def capacity_target(step: jax.Array, capacity: float, capacity_steps: int) -> jax.Array:
    """C(step) = capacity · min(1, step / capacity_steps): the capacity annealed linearly
    (Burgess et al. 2018)."""
    if capacity_steps <= 0:
        return jnp.asarray(capacity, jnp.float32)
    return capacity * jnp.minimum(1.0, step / capacity_steps)


def free_bits_rate(rate_per_dim: jax.Array, free_bits: float) -> jax.Array:
    """Σᵢ max(λ, E_batch[KLᵢ]) (Kingma et al. 2016): dimensions below λ nats get no KL gradient.

    rate_per_dim: [B, k] -> scalar.
    """
    return jnp.sum(jnp.maximum(free_bits, jnp.mean(rate_per_dim, axis=0)))


def loss(terms: ElboTerms, config, step: jax.Array) -> jax.Array:
    """Scalar training loss from per-example terms; `config` is the `objective` config section.

    β-VAE with optional linear warm-up and free bits:
        E[distortion] + β · w(step) · R,   R = E[rate] or Σᵢ max(free_bits, E[rateᵢ])
    Capacity-controlled β-VAE (when `capacity` is set, Burgess et al. 2018):
        E[distortion] + γ · |E[rate] − C(step)|
    """
    distortion = jnp.mean(terms.distortion)
    if config.capacity is not None:
        target = capacity_target(step, config.capacity, config.capacity_steps)
        return distortion + config.capacity_gamma * jnp.abs(jnp.mean(terms.rate) - target)
    if config.free_bits > 0:
        if terms.rate_per_dim is None:
            raise ValueError(
                "objective.free_bits needs a diagonal posterior (model.posterior='diag')"
            )
        rate = free_bits_rate(terms.rate_per_dim, config.free_bits)
    else:
        rate = jnp.mean(terms.rate)
    return distortion + kl_weight(step, config.beta, config.kl_warmup_steps) * rate


def iwae_bound(
    log_p_x_given_z: jax.Array, log_p_z: jax.Array, log_q_z: jax.Array, axis: int = 0
) -> jax.Array:
    """Importance-weighted bound (Burda et al. 2016) over K samples along `axis`.

        log p(x) ≥ log (1/K) Σₖ p(x|zₖ) p(zₖ) / q(zₖ|x),   zₖ ~ q(z|x)

    computed with logsumexp. Inputs share a shape with the K samples on `axis`; the result
    drops that axis. With K = 1 it equals the ELBO.
    """
    log_weights = log_p_x_given_z + log_p_z - log_q_z
    num_samples = log_weights.shape[axis]
    return jax.nn.logsumexp(log_weights, axis=axis) - math.log(num_samples)


def bits_per_dim(nll_nats, image_shape: tuple[int, int, int]):
    """Negative log-likelihood in nats per image -> bits per dimension: nll / (H·W·C · ln 2)."""
    return nll_nats / (math.prod(image_shape) * math.log(2.0))
