"""What one forward pass of any model returns."""

from __future__ import annotations

import jax
from flax import struct

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax import objectives as O


@struct.dataclass
class VaeOutput:
    """q(z|x) over [B, k], the prior p(z) it is scored against (over [k] or [B, k]: the
    standard normal, or a hierarchical model's conditional priors at the sampled groups above),
    z ~ q [B, k] and p(x|z) over [B, H, W, C]. sampled_rate: the rate is the single-sample
    estimate log q(z|x) − log p(z) rather than the closed-form KL (objectives.elbo_terms)."""

    posterior: D.Gaussian
    prior: D.Gaussian
    z: jax.Array
    likelihood: L.Likelihood
    sampled_rate: bool = struct.field(pytree_node=False, default=False)

    def elbo_terms(self, x: jax.Array) -> O.ElboTerms:
        """objectives.elbo_terms of images x [B, H, W, C]."""
        z = self.z if self.sampled_rate else None
        return O.elbo_terms(self.posterior, self.prior, self.likelihood, x, z)

    def log_weight_terms(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(log p(x|z), log p(z), log q(z|x)), each [...]: the importance weight's parts."""
        return (
            self.likelihood.log_prob(x),
            self.prior.log_prob(self.z),
            self.posterior.log_prob(self.z),
        )
