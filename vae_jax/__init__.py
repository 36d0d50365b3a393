"""vae_jax: variational autoencoders in JAX/Flax."""

from vae_jax import distributions, likelihoods, objectives
from vae_jax.run import Run, load_run

__all__ = ["Run", "distributions", "likelihoods", "load_run", "objectives"]
