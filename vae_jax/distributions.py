"""Gaussian posteriors and priors over latent codes, and the KL divergence between them.

Both classes are `flax.struct` dataclasses (pytrees), so they pass through `jit` and `vmap`.
Batch dimensions lead; the event dimension `k` is last: `mean` is `[..., k]`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

LOG_2PI = math.log(2.0 * math.pi)


def _broadcast_matrix(matrix: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
    return jnp.broadcast_to(matrix, batch_shape + matrix.shape[-2:])


@struct.dataclass
class DiagGaussian:
    """N(mean, diag(exp(log_var))). mean, log_var: [..., k].

    `log_var` is used as given: clamping it to a safe range is the encoder's job.
    """

    mean: jax.Array
    log_var: jax.Array

    @property
    def event_size(self) -> int:
        return self.mean.shape[-1]

    @property
    def stddev(self) -> jax.Array:
        return jnp.exp(0.5 * self.log_var)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Reparameterised sample mean + stddev * eps: [*sample_shape, ..., k]."""
        shape = sample_shape + jnp.broadcast_shapes(self.mean.shape, self.log_var.shape)
        eps = jax.random.normal(key, shape, self.mean.dtype)
        return self.mean + self.stddev * eps

    def log_prob(self, z: jax.Array) -> jax.Array:
        """log N(z; mean, diag(var)) for z: [..., k] -> [...]."""
        return jnp.sum(self.log_prob_per_dimension(z), axis=-1)

    def log_prob_per_dimension(self, z: jax.Array) -> jax.Array:
        """log N(z_i; mean_i, var_i) of each dimension for z: [..., k] -> [..., k]."""
        squared = jnp.square(z - self.mean) * jnp.exp(-self.log_var)
        return -0.5 * (squared + self.log_var + LOG_2PI)

    def covariance(self) -> jax.Array:
        """[..., k, k] dense diagonal covariance."""
        variance = jnp.exp(self.log_var)
        return variance[..., :, None] * jnp.eye(self.event_size, dtype=variance.dtype)

    def log_det_covariance(self) -> jax.Array:
        """ln det Σ: [...]."""
        return jnp.sum(jnp.broadcast_to(self.log_var, self.mean.shape), axis=-1)

    def entropy(self) -> jax.Array:
        """Differential entropy ½[k(1 + ln 2π) + ln det Σ]: [...]."""
        return 0.5 * (self.event_size * (1.0 + LOG_2PI) + self.log_det_covariance())

    def scale_tril(self) -> jax.Array:
        """Cholesky factor L of Σ = L Lᵀ: [..., k, k]."""
        stddev = jnp.broadcast_to(self.stddev, self.mean.shape)
        return stddev[..., :, None] * jnp.eye(self.event_size, dtype=stddev.dtype)

    def whiten(self, x: jax.Array) -> jax.Array:
        """L⁻¹ x for x: [..., k, n] -> [..., k, n]."""
        return x / self.stddev[..., :, None]


@struct.dataclass
class FullGaussian:
    """N(mean, L Lᵀ). mean: [..., k]; scale_tril L: [..., k, k], lower triangular.

    The diagonal of L must be non-zero; the encoder makes it positive (softplus + ε).
    """

    mean: jax.Array
    scale_tril: jax.Array

    @property
    def event_size(self) -> int:
        return self.mean.shape[-1]

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Reparameterised sample mean + L eps: [*sample_shape, ..., k]."""
        batch_shape = jnp.broadcast_shapes(self.mean.shape[:-1], self.scale_tril.shape[:-2])
        eps = jax.random.normal(
            key, sample_shape + batch_shape + (self.event_size,), self.mean.dtype
        )
        return self.mean + jnp.einsum("...ij,...j->...i", self.scale_tril, eps)

    def log_prob(self, z: jax.Array) -> jax.Array:
        """log N(z; mean, L Lᵀ) for z: [..., k] -> [...]."""
        whitened = self.whiten((z - self.mean)[..., None])[..., 0]
        return (
            -0.5 * (jnp.sum(jnp.square(whitened), axis=-1) + self.event_size * LOG_2PI)
            - 0.5 * self.log_det_covariance()
        )

    def covariance(self) -> jax.Array:
        """[..., k, k] dense covariance L Lᵀ."""
        return self.scale_tril @ jnp.swapaxes(self.scale_tril, -1, -2)

    def log_det_covariance(self) -> jax.Array:
        """ln det Σ = 2 Σᵢ ln|Lᵢᵢ|: [...]."""
        diagonal = jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.abs(diagonal)), axis=-1)
        return jnp.broadcast_to(log_det, jnp.broadcast_shapes(log_det.shape, self.mean.shape[:-1]))

    def entropy(self) -> jax.Array:
        """Differential entropy ½[k(1 + ln 2π) + ln det Σ]: [...]."""
        return 0.5 * (self.event_size * (1.0 + LOG_2PI) + self.log_det_covariance())

    def whiten(self, x: jax.Array) -> jax.Array:
        """L⁻¹ x by a triangular solve, for x: [..., k, n] -> [..., k, n]."""
        batch_shape = jnp.broadcast_shapes(self.scale_tril.shape[:-2], x.shape[:-2])
        scale_tril = _broadcast_matrix(self.scale_tril, batch_shape)
        return jax.scipy.linalg.solve_triangular(
            scale_tril, _broadcast_matrix(x, batch_shape), lower=True
        )


Gaussian = DiagGaussian | FullGaussian


def standard_normal(k: int) -> DiagGaussian:
    """The prior N(0, I) over k latent dimensions (no batch dimensions)."""
    return DiagGaussian(jnp.zeros((k,)), jnp.zeros((k,)))


def kl_divergence(p: Gaussian, q: Gaussian) -> jax.Array:
    """KL(p || q) between k-dimensional Gaussians, in nats: [...] over broadcast batch dims.

        KL(N(μp, Σp) || N(μq, Σq))
          = ½ [ tr(Σq⁻¹ Σp) + (μq − μp)ᵀ Σq⁻¹ (μq − μp) − k + ln det Σq − ln det Σp ]

    With Cholesky factors Σ = L Lᵀ the trace is ‖Lq⁻¹ Lp‖²_F and the quadratic form
    ‖Lq⁻¹ (μq − μp)‖², both from triangular solves: no explicit inverse, no determinant.
    Two diagonal Gaussians use the closed form Σᵢ ½[σp²/σq² + (μq − μp)²/σq² − 1 + ln σq² − ln σp²].
    """
    if isinstance(p, DiagGaussian) and isinstance(q, DiagGaussian):
        return jnp.sum(kl_per_dimension(p, q), axis=-1)
    p_scale = p.scale_tril() if isinstance(p, DiagGaussian) else p.scale_tril
    trace = jnp.sum(jnp.square(q.whiten(p_scale)), axis=(-2, -1))
    mahalanobis = jnp.sum(jnp.square(q.whiten((q.mean - p.mean)[..., None])), axis=(-2, -1))
    k = p.event_size
    return 0.5 * (trace + mahalanobis - k + q.log_det_covariance() - p.log_det_covariance())


def kl_per_dimension(p: DiagGaussian, q: DiagGaussian) -> jax.Array:
    """KL(p || q) of each latent dimension of two diagonal Gaussians: [..., k].

    KLᵢ = ½ [ exp(ln σp² − ln σq²) + (μq − μp)² / σq² − 1 + ln σq² − ln σp² ]
    """
    log_ratio = p.log_var - q.log_var
    mahalanobis = jnp.square(q.mean - p.mean) * jnp.exp(-q.log_var)
    return 0.5 * (jnp.exp(log_ratio) + mahalanobis - 1.0 - log_ratio)
