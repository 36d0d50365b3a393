"""Flax Linen encoders, decoders and the VAE that combines them.

Encoders map images [..., H, W, C] in [0, 1] to a posterior q(z|x) (DiagGaussian or FullGaussian
over [..., k]); decoders map codes [..., k] to a likelihood p(x|z) over [..., H, W, C]. Leading
axes beyond the batch (e.g. K importance samples) pass through. Modules never call `jit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn
from flax import struct

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.layers import Upsample2x

# Encoder log-variances are clipped to this range: σ from e^-5 to e^5 (about 0.007 to 150) keeps
# exp(log_var) and the KL's exp(-log_var) finite in float32 whatever the encoder outputs.
LOG_VAR_RANGE = (-10.0, 10.0)
# Smallest diagonal entry of a full-covariance Cholesky factor (after softplus).
MIN_SCALE = 1e-4
# Floor of the discretized-logistic log-scale: at e^-8 one 8-bit bin of width 1/255 already holds
# tanh(e^8 / 1020) = 99.4 % of the mass (PixelCNN++ uses -7 on data in [-1, 1], twice as wide).
MIN_LOGISTIC_LOG_SCALE = -8.0


def _flatten_batch(x: jax.Array, event_ndim: int) -> tuple[jax.Array, tuple[int, ...]]:
    """Merges all leading axes into one: [..., *event] -> ([N, *event], leading shape)."""
    lead = x.shape[: x.ndim - event_ndim]
    return x.reshape((-1,) + x.shape[x.ndim - event_ndim :]), lead


def _restore_batch(tree, lead: tuple[int, ...]):
    """Splits the merged leading axis of every array back into `lead`."""
    return jax.tree.map(lambda a: a.reshape(lead + a.shape[1:]), tree)


def _dense_relu(h: jax.Array, widths: Sequence[int], dtype: Any) -> jax.Array:
    """ReLU dense layers of the given widths computing in `dtype` (call inside a compact
    method)."""
    for width in widths:
        h = nn.relu(nn.Dense(width, dtype=dtype)(h))
    return h


class GaussianHead(nn.Module):
    """Dense features [N, F] -> a diagonal or full-covariance Gaussian over [N, k]."""

    latent_dim: int
    posterior: str

    @nn.compact
    def __call__(self, h: jax.Array) -> D.Gaussian:
        k = self.latent_dim
        mean = nn.Dense(k, name="mean")(h)
        if self.posterior == "diag":
            log_var = jnp.clip(nn.Dense(k, name="log_var")(h), *LOG_VAR_RANGE)
            return D.DiagGaussian(mean, log_var)
        diagonal = jax.nn.softplus(nn.Dense(k, name="scale_diag")(h)) + MIN_SCALE
        rows, cols = np.tril_indices(k, -1)
        off_diagonal = nn.Dense(len(rows), name="scale_off_diag")(h)
        scale_tril = jnp.zeros(h.shape[:-1] + (k, k), h.dtype).at[..., rows, cols].set(off_diagonal)
        scale_tril = scale_tril + diagonal[..., :, None] * jnp.eye(k, dtype=h.dtype)
        return D.FullGaussian(mean, scale_tril)


def outputs_per_channel(likelihood: str) -> int:
    """Decoder output maps per image channel: (loc, log_scale) for the discretized logistic."""
    return 2 if likelihood == "discretized_logistic" else 1


class LikelihoodHead(nn.Module):
    """Raw decoder output [..., H, W, C·n] -> the likelihood object named by `likelihood`."""

    likelihood: str
    gaussian_scale: float = 0.1

    @nn.compact
    def __call__(self, raw: jax.Array) -> L.Likelihood:
        if self.likelihood == "bernoulli":
            return L.Bernoulli(raw)
        if self.likelihood == "gaussian":
            return L.Gaussian(raw, jnp.full((), math.log(self.gaussian_scale), raw.dtype))
        if self.likelihood == "gaussian_learned":
            # One learned σ per image channel (σ-VAE, Rybkin et al. 2021), starting at σ = 1.
            log_scale = self.param("log_scale", nn.initializers.zeros, (raw.shape[-1],))
            return L.Gaussian(raw, log_scale)
        if self.likelihood == "discretized_logistic":
            loc, log_scale = jnp.split(raw, 2, axis=-1)
            return L.DiscretizedLogistic(loc, jnp.maximum(log_scale, MIN_LOGISTIC_LOG_SCALE))
        raise ValueError(f"unknown likelihood {self.likelihood!r}")


class ConvEncoder(nn.Module):
    """Images [..., H, W, C] -> q(z|x): 4x4 stride-2 convs, dense layers, Gaussian head.

    Convs and dense layers compute in `dtype`; the Gaussian head always in float32."""

    channels: Sequence[int]
    hidden: Sequence[int]
    latent_dim: int
    posterior: str = "diag"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> D.Gaussian:
        h, lead = _flatten_batch(x.astype(self.dtype), 3)
        for features in self.channels:
            conv = nn.Conv(features, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype)
            h = nn.relu(conv(h))
        h = _dense_relu(h.reshape(h.shape[0], -1), self.hidden, self.dtype)
        posterior = GaussianHead(self.latent_dim, self.posterior)(h.astype(jnp.float32))
        return _restore_batch(posterior, lead)


class ConvDecoder(nn.Module):
    """Codes [..., k] -> p(x|z) over [..., H, W, C]: dense layers, then stride-2 upsampling
    stages mirroring the encoder (custom-gradient transposed convs, see layers.py).

    Layers compute in `dtype`; the likelihood's parameters are float32."""

    channels: Sequence[int]
    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    likelihood: str
    gaussian_scale: float = 0.1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> L.Likelihood:
        h, lead = _flatten_batch(z.astype(self.dtype), 1)
        height, width, image_channels = self.image_shape
        stages = len(self.channels)
        start = (height // 2**stages, width // 2**stages)
        widths = tuple(self.hidden) + (start[0] * start[1] * self.channels[-1],)
        h = _dense_relu(h, widths, self.dtype)
        h = h.reshape((-1,) + start + (self.channels[-1],))
        for features in reversed(self.channels[:-1]):
            h = nn.relu(Upsample2x(features, dtype=self.dtype)(h))
        outputs = image_channels * outputs_per_channel(self.likelihood)
        raw = Upsample2x(outputs, dtype=self.dtype)(h).astype(jnp.float32)
        return LikelihoodHead(self.likelihood, self.gaussian_scale)(_restore_batch(raw, lead))


class MlpEncoder(nn.Module):
    """Images [..., H, W, C] -> q(z|x) through dense layers on the flattened pixels (computing
    in `dtype`; the Gaussian head in float32)."""

    hidden: Sequence[int]
    latent_dim: int
    posterior: str = "diag"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> D.Gaussian:
        h, lead = _flatten_batch(x.astype(self.dtype), 3)
        h = _dense_relu(h.reshape(h.shape[0], -1), self.hidden, self.dtype)
        posterior = GaussianHead(self.latent_dim, self.posterior)(h.astype(jnp.float32))
        return _restore_batch(posterior, lead)


class MlpDecoder(nn.Module):
    """Codes [..., k] -> p(x|z) over [..., H, W, C] through dense layers (computing in `dtype`;
    the likelihood's parameters are float32)."""

    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    likelihood: str
    gaussian_scale: float = 0.1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> L.Likelihood:
        h, lead = _flatten_batch(z.astype(self.dtype), 1)
        h = _dense_relu(h, self.hidden, self.dtype)
        height, width, channels = self.image_shape
        outputs = height * width * channels * outputs_per_channel(self.likelihood)
        raw = nn.Dense(outputs, dtype=self.dtype)(h).astype(jnp.float32)
        raw = raw.reshape(lead + (height, width, -1))
        return LikelihoodHead(self.likelihood, self.gaussian_scale)(raw)


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
