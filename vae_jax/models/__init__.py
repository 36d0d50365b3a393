"""Models: the VAE (encoder + decoder + standard normal prior) and `make_model`, which builds it
from the `model` config section. One file per model family:

    heads.py    Gaussian posterior head, likelihood heads
    layers.py   Upsample2x (fast stride-2 transposed conv), dense stacks, batch folding
    conv.py     ConvEncoder / ConvDecoder        (model.kind="conv")
    mlp.py      MlpEncoder / MlpDecoder          (model.kind="mlp")
    discriminator.py  FactorVAE's discriminator    (objective.kind="factor_vae")

Encoders map images [..., H, W, C] in [0, 1] to a posterior q(z|x) over [..., k]; decoders map
codes [..., k] to a likelihood p(x|z) over [..., H, W, C]. Leading axes beyond the batch (e.g. K
importance samples) pass through. Modules never call `jit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn
from flax import struct

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models.conv import ConvDecoder, ConvEncoder
from vae_jax.models.heads import LOG_VAR_RANGE
from vae_jax.models.mlp import MlpDecoder, MlpEncoder

__all__ = ["LOG_VAR_RANGE", "VAE", "VaeOutput", "make_model"]


@struct.dataclass
class VaeOutput:
    """What one forward pass produces: q(z|x) over [B, k], z ~ q [B, k] and p(x|z) over
    [B, H, W, C]."""

    posterior: D.Gaussian
    z: jax.Array
    likelihood: L.Likelihood


class VAE(nn.Module):
    """Encoder + decoder with a standard normal prior over `latent_dim` codes."""

    encoder: nn.Module
    decoder: nn.Module
    latent_dim: int

    def __call__(self, x: jax.Array, key: jax.Array) -> VaeOutput:
        """x: [B, H, W, C] in [0, 1]; key: sampling key for z ~ q(z|x)."""
        posterior = self.encoder(x)
        z = posterior.sample(key)
        return VaeOutput(posterior=posterior, z=z, likelihood=self.decoder(z))

    def encode(self, x: jax.Array) -> D.Gaussian:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> L.Likelihood:
        return self.decoder(z)

    @property
    def prior(self) -> D.DiagGaussian:
        return D.standard_normal(self.latent_dim)


def make_model(
    model_config: ml_collections.ConfigDict,
    image_shape: tuple[int, int, int],
    compute_dtype: str = "float32",
) -> VAE:
    """The VAE described by the `model` config section, for images of `image_shape` (H, W, C).

    compute_dtype ("float32" or "bfloat16"): activations and matmuls of the encoder and decoder
    layers. Parameters, posterior and likelihood parameters stay float32 either way."""
    m = model_config
    dtype = jnp.dtype(compute_dtype)
    if m.kind == "conv":
        encoder = ConvEncoder(m.channels, m.hidden, m.latent_dim, m.posterior, dtype)
        decoder = ConvDecoder(
            m.channels, m.hidden, image_shape, m.likelihood, m.gaussian_scale, dtype
        )
    else:
        encoder = MlpEncoder(m.hidden, m.latent_dim, m.posterior, dtype)
        decoder = MlpDecoder(m.hidden, image_shape, m.likelihood, m.gaussian_scale, dtype)
    return VAE(encoder=encoder, decoder=decoder, latent_dim=m.latent_dim)
