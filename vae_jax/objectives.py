"""The evidence lower bound, its training variants (objective.kind), the regularisers of the
disentangling methods, and the importance-weighted bound.

    beta_vae    E[D] + β·w(t)·R                     (Higgins et al. 2017; warm-up, free bits)
    annealed    E[D] + γ·|R − C(t)|                 (Burgess et al. 2018)
    beta_tcvae  E[D] + w(t)·R + (β − 1)·TC          (Chen et al. 2018, disentanglement_lib's form)
    factor_vae  E[D] + w(t)·R + γ·TC_discriminator  (Kim & Mnih 2018)
    dip_vae_i   E[D] + w(t)·R + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)²   C = Cov[μ(x)]
    dip_vae_ii  the same with C = E[diag σ²(x)] + Cov[μ(x)]                  (Kumar et al. 2018)

with D the distortion, R the rate (KL), w(t) the KL warm-up. Per-example terms have shape [B];
`loss` and the batch regularisers reduce over the batch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
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
    posterior: D.Gaussian,
    prior: D.Gaussian,
    likelihood: Likelihood,
    x: jax.Array,
    z: jax.Array | None = None,
) -> ElboTerms:
    """ELBO pieces for images x: [B, H, W, C] under a likelihood decoded from z ~ q(z|x).

    rate       = KL(q(z|x) || p(z))          [B]
    distortion = −log p(x|z)                 [B]
    elbo       = −(distortion + rate)        [B]

    The rate is the closed-form KL, or, when the sample z [B, k] is given, its single-sample
    estimate log q(z|x) − log p(z): for hierarchical posteriors whose later groups depend on
    samples of earlier ones that the prior does not condition on (bottom-up inference), where
    the closed form of each group's KL would be biased. Either way E_q[rate] is the KL.
    """
    distortion = -likelihood.log_prob(x)
    both_diagonal = isinstance(posterior, D.DiagGaussian) and isinstance(prior, D.DiagGaussian)
    if both_diagonal and z is None:
        rate_per_dim = D.kl_per_dimension(posterior, prior)
    elif both_diagonal:
        rate_per_dim = posterior.log_prob_per_dimension(z) - prior.log_prob_per_dimension(z)
    else:
        rate_per_dim = None
    if rate_per_dim is not None:
        rate = jnp.sum(rate_per_dim, axis=-1)
    elif z is None:
        rate = D.kl_divergence(posterior, prior)
    else:
        rate = posterior.log_prob(z) - prior.log_prob(z)
    return ElboTerms(
        rate=rate, distortion=distortion, elbo=-(rate + distortion), rate_per_dim=rate_per_dim
    )


def group_rates(rate_per_dim: jax.Array, group_sizes: tuple[int, ...]) -> jax.Array:
    """The rate of each latent group of a hierarchical model, whose codes are the groups'
    flattened latents concatenated in generative order (top first):
    rate_per_dim [..., k] -> [..., L] with k = Σ group_sizes."""
    bounds = np.cumsum((0,) + tuple(group_sizes))
    return jnp.stack(
        [jnp.sum(rate_per_dim[..., a:b], axis=-1) for a, b in zip(bounds[:-1], bounds[1:])],
        axis=-1,
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


@struct.dataclass
class ObjectiveWeights:
    """The `objective` config section as the jitted train step reads it: the weights are arrays
    (so that the points of a vectorised sweep can differ in them, vae_jax/train.py), what
    selects code paths is static. `loss` takes it or the config section itself."""

    beta: jax.Array
    capacity: jax.Array | None
    capacity_gamma: jax.Array
    factor_vae_gamma: jax.Array
    dip_lambda_od: jax.Array
    dip_lambda_d: jax.Array
    kind: str = struct.field(pytree_node=False)
    kl_warmup_steps: int = struct.field(pytree_node=False)
    free_bits: float = struct.field(pytree_node=False)
    capacity_steps: int = struct.field(pytree_node=False)


def objective_weights(config) -> ObjectiveWeights:
    """ObjectiveWeights of the `objective` config section, the weights as float32 scalars."""

    def weight(value):
        return None if value is None else np.float32(value)

    return ObjectiveWeights(
        beta=weight(config.beta),
        capacity=weight(config.capacity),
        capacity_gamma=weight(config.capacity_gamma),
        factor_vae_gamma=weight(config.factor_vae_gamma),
        dip_lambda_od=weight(config.dip_lambda_od),
        dip_lambda_d=weight(config.dip_lambda_d),
        kind=config.kind,
        kl_warmup_steps=config.kl_warmup_steps,
        free_bits=config.free_bits,
        capacity_steps=config.capacity_steps,
    )


def loss(
    terms: ElboTerms, config, step: jax.Array, regularizers: dict[str, jax.Array]
) -> jax.Array:
    """Scalar training loss of objective.kind (see the module docstring) from per-example terms
    and the batch regularisers of that kind (`regularizers`: see regularizer_penalty); `config`
    is the `objective` config section or its ObjectiveWeights.

    The rate term is E[rate], or Σᵢ max(free_bits, E[rateᵢ]) with free bits, weighted by
    w(step) = min(1, step / kl_warmup_steps), times β for beta_vae.
    """
    distortion = jnp.mean(terms.distortion)
    if config.kind == "annealed":
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
    beta = config.beta if config.kind == "beta_vae" else 1.0
    weight = kl_weight(step, beta, config.kl_warmup_steps)
    return distortion + weight * rate + regularizer_penalty(config, regularizers)


def regularizer_penalty(config, regularizers: dict[str, jax.Array]) -> jax.Array:
    """What objective.kind adds to the ELBO loss, from the batch regularisers it computed:
    beta_tcvae (β − 1)·tc (tc_decomposition); factor_vae γ·tc (discriminator_tc);
    dip_vae_i / dip_vae_ii λ_od·dip_off_diagonal + λ_d·dip_diagonal (dip_terms); else 0."""
    if config.kind == "beta_tcvae":
        return (config.beta - 1.0) * regularizers["tc"]
    if config.kind == "factor_vae":
        return config.factor_vae_gamma * regularizers["tc"]
    if config.kind in ("dip_vae_i", "dip_vae_ii"):
        return (
            config.dip_lambda_od * regularizers["dip_off_diagonal"]
            + config.dip_lambda_d * regularizers["dip_diagonal"]
        )
    return jnp.zeros((), jnp.float32)


def pairwise_log_density(z: jax.Array, posterior: D.DiagGaussian) -> jax.Array:
    """log q(z_i,d | x_j) for every pair of batch elements: z [M, k], posterior over [M, k]
    -> [M (i), M (j), k]."""
    mean, log_var = posterior.mean[None], posterior.log_var[None]
    squared = jnp.square(z[:, None] - mean) * jnp.exp(-log_var)
    return -0.5 * (squared + log_var + D.LOG_2PI)


def mws_log_weights(batch_size: int) -> jax.Array:
    """Minibatch-weighted sampling: log w_ij = −log M for every pair [M, M].

    Chen et al. (2018) weight by 1/(N·M); that shifts log q(z) by −log N and log Πd q(z_d) by
    −k·log N, so their TC is off by (k − 1)·log N nats with the same gradients. With 1/M the
    estimate tends to the true TC as M grows."""
    return jnp.full((batch_size, batch_size), -math.log(batch_size))


def mss_log_weights(batch_size: int, dataset_size: int) -> jax.Array:
    """Minibatch-stratified sampling (Chen et al. 2018) log weights [M, M]: row i weights its own
    element 1/N, one stratum element (j = i + 1 mod M) (N − M + 1)/(N·(M − 1)) and the other
    M − 2 elements 1/(M − 1), so that every row sums to 1.

    (The matrix copied across public code fills column 0 instead of the diagonal: a strided
    assignment with step M instead of M + 1 on the flattened matrix.)"""
    m, n = batch_size, dataset_size
    others = jnp.full((m, m), 1.0 / (m - 1))
    own = jnp.eye(m, dtype=bool)
    stratum = jnp.roll(own, 1, axis=1)
    weights = jnp.where(own, 1.0 / n, jnp.where(stratum, (n - m + 1) / (n * (m - 1)), others))
    return jnp.log(weights)


def tc_decomposition(
    z: jax.Array, posterior: D.DiagGaussian, log_weights: jax.Array
) -> dict[str, jax.Array]:
    """The ELBO's KL split into index-code mutual information, total correlation and
    dimension-wise KL (Chen et al. 2018), estimated on the batch: z [M, k] ~ q(z|x) [M, k],
    log_weights [M, M] of the aggregate posterior (mws_log_weights or mss_log_weights):

        log q(z_i)        = logsumexp_j [log w_ij + Σ_d log q(z_i,d | x_j)]
        log Π_d q(z_i,d)  = Σ_d logsumexp_j [log w_ij + log q(z_i,d | x_j)]
        mutual_info = E_i[log q(z_i|x_i) − log q(z_i)]
        tc          = E_i[log q(z_i) − log Π_d q(z_i,d)]
        dimwise_kl  = E_i[log Π_d q(z_i,d) − log p(z_i)]

    Returns scalars {"mutual_info", "tc", "dimwise_kl"}.
    """
    log_density = pairwise_log_density(z, posterior)  # [M, M, k]
    log_q_z = jax.nn.logsumexp(log_weights + log_density.sum(-1), axis=1)
    log_q_z_dims = jax.nn.logsumexp(log_weights[:, :, None] + log_density, axis=1).sum(-1)
    log_q_z_given_x = posterior.log_prob(z)
    log_p_z = D.standard_normal(z.shape[-1]).log_prob(z)
    return {
        "mutual_info": jnp.mean(log_q_z_given_x - log_q_z),
        "tc": jnp.mean(log_q_z - log_q_z_dims),
        "dimwise_kl": jnp.mean(log_q_z_dims - log_p_z),
    }


def dip_terms(posterior: D.DiagGaussian, kind: str) -> dict[str, jax.Array]:
    """DIP-VAE's moment-matching terms (Kumar et al. 2018) on the batch: C = Cov_batch[μ(x)]
    (kind "dip_vae_i") or E_batch[diag σ²(x)] + Cov_batch[μ(x)] ("dip_vae_ii"), over [M, k]:

        dip_off_diagonal = Σ_{i≠j} C_ij²,   dip_diagonal = Σ_i (C_ii − 1)²
    """
    mean = posterior.mean
    centred = mean - jnp.mean(mean, axis=0)
    covariance = centred.T @ centred / mean.shape[0]  # the batch's own (biased) covariance
    if kind == "dip_vae_ii":
        covariance = covariance + jnp.diag(jnp.mean(jnp.exp(posterior.log_var), axis=0))
    off_diagonal = 1.0 - jnp.eye(covariance.shape[0], dtype=covariance.dtype)
    return {
        "dip_off_diagonal": jnp.sum(jnp.square(covariance) * off_diagonal),
        "dip_diagonal": jnp.sum(jnp.square(jnp.diag(covariance) - 1.0)),
    }


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
    """Each column of z [M, k] permuted independently across the batch: a sample of
    Π_d q(z_d) from one of q(z) (Kim & Mnih 2018)."""
    keys = jax.random.split(key, z.shape[-1])
    return jax.vmap(
        lambda k, column: jax.random.permutation(k, column), in_axes=(0, 1), out_axes=1
    )(keys, z)


def discriminator_tc(logits: jax.Array) -> jax.Array:
    """FactorVAE's TC estimate E[log D(z) / (1 − D(z))] = E[logit_real − logit_permuted] from
    the discriminator's logits [M, 2] on codes z ~ q(z) (class 0: real, class 1: permuted)."""
    return jnp.mean(logits[:, 0] - logits[:, 1])


# The FactorVAE discriminator's probabilities are clipped to [ε, 1 − ε] in its loss, as in
# disentanglement_lib (architectures.make_discriminator).
DISCRIMINATOR_EPSILON = 1e-6


def discriminator_loss(
    logits_real: jax.Array, logits_permuted: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy of the FactorVAE discriminator, half on real codes (class 0) and half on
    permuted ones (class 1), and its accuracy; logits [M, 2] each.

        loss = −½ E[log clip(D(z), ε, 1 − ε)] − ½ E[log clip(1 − D(z̃), ε, 1 − ε)],  ε = 1e-6

    D the softmax probability of class 0. The clip is disentanglement_lib's: it bounds each
    example's loss by −log ε ≈ 13.8 nats, and a clipped (confidently wrong or right) example
    contributes no gradient.
    """
    p_real = jnp.clip(
        jax.nn.softmax(logits_real)[:, 0], DISCRIMINATOR_EPSILON, 1 - DISCRIMINATOR_EPSILON
    )
    p_permuted = jnp.clip(
        jax.nn.softmax(logits_permuted)[:, 1], DISCRIMINATOR_EPSILON, 1 - DISCRIMINATOR_EPSILON
    )
    log_p_real, log_p_permuted = jnp.log(p_real), jnp.log(p_permuted)
    loss = -0.5 * (jnp.mean(log_p_real) + jnp.mean(log_p_permuted))
    correct = jnp.concatenate(
        [jnp.argmax(logits_real, -1) == 0, jnp.argmax(logits_permuted, -1) == 1]
    )
    return loss, jnp.mean(correct.astype(jnp.float32))


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
