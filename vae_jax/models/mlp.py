"""Fully connected encoder and decoder on flattened pixels (the IWAE paper's MNIST models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models.heads import GaussianHead, LikelihoodHead, raw_outputs
from vae_jax.models.layers import dense_relu, flatten_batch, restore_batch


class MlpEncoder(nn.Module):
    """Images [..., H, W, C] -> q(z|x) through dense layers on the flattened pixels (computing
    in `dtype`; the Gaussian head in float32)."""

    hidden: Sequence[int]
    latent_dim: int
    posterior: str = "diag"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> D.Gaussian:
        h, lead = flatten_batch(x.astype(self.dtype), 3)
        h = dense_relu(h.reshape(h.shape[0], -1), self.hidden, self.dtype)
        posterior = GaussianHead(self.latent_dim, self.posterior)(h.astype(jnp.float32))
        return restore_batch(posterior, lead)


class MlpDecoder(nn.Module):
    """Codes [..., k] -> p(x|z) over [..., H, W, C] through dense layers (computing in `dtype`;
    the likelihood's parameters are float32)."""

    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    likelihood: str
    gaussian_scale: float = 0.1
    mixture_components: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> L.Likelihood:
        h, lead = flatten_batch(z.astype(self.dtype), 1)
        h = dense_relu(h, self.hidden, self.dtype)
        height, width, channels = self.image_shape
        outputs = height * width * raw_outputs(self.likelihood, channels, self.mixture_components)
        raw = nn.Dense(outputs, dtype=self.dtype)(h).astype(jnp.float32)
        raw = raw.reshape(lead + (height, width, -1))
        return LikelihoodHead(
            self.likelihood, self.gaussian_scale, self.image_shape[-1], self.mixture_components
        )(raw)
