"""Convolutional encoder and decoder: 4x4 stride-2 convs down to a dense bottleneck, and the
mirrored stride-2 upsampling stages back (both with custom gradients, see layers.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models.heads import GaussianHead, LikelihoodHead, raw_outputs
from vae_jax.models.layers import Downsample2x, Upsample2x, dense_relu, flatten_batch, restore_batch


class ConvEncoder(nn.Module):
    """Images [..., H, W, C] -> q(z|x): 4x4 stride-2 convs (Downsample2x), dense layers,
    Gaussian head.

    Convs and dense layers compute in `dtype`; the Gaussian head always in float32."""

    channels: Sequence[int]
    hidden: Sequence[int]
    latent_dim: int
    posterior: str = "diag"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> D.Gaussian:
        h, lead = flatten_batch(x.astype(self.dtype), 3)
        for i, features in enumerate(self.channels):
            # Named as nn.Conv's were, so that earlier checkpoints still restore.
            h = nn.relu(Downsample2x(features, dtype=self.dtype, name=f"Conv_{i}")(h))
        h = dense_relu(h.reshape(h.shape[0], -1), self.hidden, self.dtype)
        posterior = GaussianHead(self.latent_dim, self.posterior)(h.astype(jnp.float32))
        return restore_batch(posterior, lead)


class ConvDecoder(nn.Module):
    """Codes [..., k] -> p(x|z) over [..., H, W, C]: dense layers, then stride-2 upsampling
    stages mirroring the encoder (custom-gradient transposed convs, see layers.py).

    Layers compute in `dtype`; the likelihood's parameters are float32."""

    channels: Sequence[int]
    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    likelihood: str
    gaussian_scale: float = 0.1
    mixture_components: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> L.Likelihood:
        h, lead = flatten_batch(z.astype(self.dtype), 1)
        height, width, image_channels = self.image_shape
        stages = len(self.channels)
        start = (height // 2**stages, width // 2**stages)
        widths = tuple(self.hidden) + (start[0] * start[1] * self.channels[-1],)
        h = dense_relu(h, widths, self.dtype)
        h = h.reshape((-1,) + start + (self.channels[-1],))
        for features in reversed(self.channels[:-1]):
            h = nn.relu(Upsample2x(features, dtype=self.dtype)(h))
        outputs = raw_outputs(self.likelihood, image_channels, self.mixture_components)
        raw = Upsample2x(outputs, dtype=self.dtype)(h).astype(jnp.float32)
        return LikelihoodHead(
            self.likelihood, self.gaussian_scale, self.image_shape[-1], self.mixture_components
        )(restore_batch(raw, lead))
