"""Models: the one-group VAE (encoder + decoder + standard normal prior), the hierarchical
models, and `make_model`, which builds the one named by model.kind. One file per model family:

    heads.py          Gaussian posterior head, likelihood heads
    layers.py         Upsample2x (fast stride-2 transposed conv), dense stacks, batch folding
    conv.py           ConvEncoder / ConvDecoder        (model.kind="conv")
    mlp.py            MlpEncoder / MlpDecoder          (model.kind="mlp")
    hierarchical.py   TopDownVAE, LadderMlpVAE         (model.kind="hierarchical", "ladder_mlp")
    discriminator.py  FactorVAE's discriminator        (objective.kind="factor_vae")
    output.py         VaeOutput, what every model's forward pass returns

Encoders map images [..., H, W, C] in [0, 1] to a posterior q(z|x) over [..., k]; decoders map
codes [..., k] to a likelihood p(x|z) over [..., H, W, C]. Leading axes beyond the batch (e.g. K
importance samples) pass through. Every model has the methods listed in hierarchical.py's
docstring (__call__, encode, decode, generate, reconstruct) and `group_sizes`, the latents of each
group (one group here). Modules never call `jit`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models.conv import ConvDecoder, ConvEncoder
from vae_jax.models.heads import LOG_VAR_RANGE
from vae_jax.models.hierarchical import LadderMlpVAE, TopDownVAE, scaled_draw, temperatures
from vae_jax.models.mlp import MlpDecoder, MlpEncoder
from vae_jax.models.output import VaeOutput

__all__ = ["LOG_VAR_RANGE", "VAE", "Model", "VaeOutput", "is_hierarchical", "make_model"]


class VAE(nn.Module):
    """Encoder + decoder with a standard normal prior over `latent_dim` codes."""

    encoder: nn.Module
    decoder: nn.Module
    latent_dim: int

    @property
    def group_sizes(self) -> tuple[int, ...]:
        return (self.latent_dim,)

    @property
    def prior(self) -> D.DiagGaussian:
        return D.standard_normal(self.latent_dim)

    def __call__(self, x: jax.Array, key: jax.Array, num_samples: int | None = None) -> VaeOutput:
        """x: [B, H, W, C] in [0, 1]; key: sampling key for z ~ q(z|x). With num_samples S,
        S codes per image decoded at once: outputs over [S, B]."""
        posterior = self.encoder(x)
        z = posterior.sample(key, () if num_samples is None else (num_samples,))
        return VaeOutput(posterior=posterior, prior=self.prior, z=z, likelihood=self.decoder(z))

    def encode(self, x: jax.Array) -> D.Gaussian:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> L.Likelihood:
        return self.decoder(z)

    def generate(
        self, key: jax.Array, n: int, temperature: float | Sequence[float] = 1.0
    ) -> L.Likelihood:
        """p(x|z) for n codes z ~ N(0, t² I)."""
        (t,) = temperatures(temperature, 1)
        return self.decoder(t * jax.random.normal(key, (n, self.latent_dim)))

    def reconstruct(
        self, x: jax.Array, key: jax.Array, groups: int = 1, temperature: float = 1.0
    ) -> L.Likelihood:
        """p(x|z) at the posterior mean (groups=1), or at a prior draw (groups=0)."""
        if groups >= 1:
            return self.decoder(self.encoder(x).mean)
        prior = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(x), self.latent_dim)), self.prior)
        return self.decoder(scaled_draw(prior, key, temperature))


Model = VAE | TopDownVAE | LadderMlpVAE


def is_hierarchical(model: Model) -> bool:
    """Whether the model has several latent groups (encode returns one posterior per group)."""
    return not isinstance(model, VAE)


def make_model(
    model_config: ml_collections.ConfigDict,
    image_shape: tuple[int, int, int],
    compute_dtype: str = "float32",
) -> Model:
    """The VAE described by the `model` config section, for images of `image_shape` (H, W, C).

    compute_dtype ("float32" or "bfloat16"): activations and matmuls of the encoder and decoder
    layers. Parameters, posterior and likelihood parameters stay float32 either way."""
    m = model_config
    dtype = jnp.dtype(compute_dtype)
    likelihood = dict(
        likelihood=m.likelihood,
        gaussian_scale=m.gaussian_scale,
        mixture_components=m.mixture_components,
        dtype=dtype,
    )
    if m.kind == "hierarchical":
        return TopDownVAE(
            image_shape,
            tuple(m.resolutions),
            tuple(m.blocks),
            tuple(m.channels),
            m.latent_channels,
            bottleneck_ratio=m.bottleneck_ratio,
            **likelihood,
        )
    if m.kind == "ladder_mlp":
        return LadderMlpVAE(image_shape, tuple(m.hidden), tuple(m.latent_dims), **likelihood)
    if m.kind == "conv":
        encoder = ConvEncoder(m.channels, m.hidden, m.latent_dim, m.posterior, dtype)
        decoder = ConvDecoder(m.channels, m.hidden, image_shape, **likelihood)
    else:
        encoder = MlpEncoder(m.hidden, m.latent_dim, m.posterior, dtype)
        decoder = MlpDecoder(m.hidden, image_shape, **likelihood)
    return VAE(encoder=encoder, decoder=decoder, latent_dim=m.latent_dim)
