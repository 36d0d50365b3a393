"""vae_jax: variational autoencoders in JAX/Flax."""

from vae_jax import distributions, likelihoods, objectives

__all__ = ["distributions", "likelihoods", "objectives"]
