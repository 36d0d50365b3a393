"""Hierarchical VAEs: several latent groups z_1 (top) ... z_L (bottom).

    TopDownVAE    model.kind="hierarchical": the VDVAE design (Child 2021; Efficient-VDVAE,
                  Hazami et al. 2022): a bottom-up residual encoder over resolutions, then a
                  top-down decoder whose blocks each hold one latent group with a conditional
                  prior p(z_l | z_<l) and posterior q(z_l | x, z_<l), both diagonal Gaussians
    LadderMlpVAE  model.kind="ladder_mlp": the IWAE paper's two-stochastic-layer MLP (Burda et
                  al. 2016): q(z_1|x) q(z_2|z_1) bottom-up, p(z_2) p(z_1|z_2) p(x|z_1), tanh

Both return the models' common VaeOutput: every group's latents flattened and concatenated in
generative order (top group first), so q, p and z are one diagonal Gaussian / array over [B, k]
with k = Σ_l k_l, and `group_sizes` splits them (objectives.group_rates). The prior in the output
is each group's prior at the sampled groups above it, so

    log w = log p(x|z) + Σ_l log p(z_l|z_<l) − Σ_l log q(z_l|x, z_<l)

is out.likelihood.log_prob(x) + out.prior.log_prob(z) − out.posterior.log_prob(z). In the
top-down model q(z_l|·) and p(z_l|·) condition on the same z_<l, so each group's KL has its
closed form (distributions.kl_divergence); the ladder's q(z_2|z_1) conditions on a sample the
prior of z_1 is evaluated against, so its rate is the single-sample estimate (sampled_rate).

Shared methods (also of the one-group VAE in models/__init__.py), for Linen's `apply(...,
method=...)`:
    __call__(x, key, num_samples=None)   VaeOutput; num_samples S adds a leading [S] axis
    decode(z)                             p(x|z) for codes [..., k] (all groups given)
    generate(key, n, temperature)         p(x|z) for z from the prior, each group's σ scaled by
                                          its temperature (one number, or one per group)
    reconstruct(x, key, groups, temperature)   the posterior mean for the top `groups` groups and
                                          prior draws at `temperature` for the rest
    encode(x)                             the per-group posteriors along the posterior means
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models.heads import MIN_SCALE, GaussianHead, LikelihoodHead, raw_outputs
from vae_jax.models.layers import flatten_batch, restore_batch
from vae_jax.models.output import VaeOutput

# softplus(r + SOFTPLUS_ONE) = 1 at r = 0: a zero-initialised layer gives σ = 1.
SOFTPLUS_ONE = math.log(math.e - 1.0)

# Chooses group l's code from (l, posterior or None, prior, key): sampling, the mean, a given z.
Choose = Callable[[int, D.DiagGaussian | None, D.DiagGaussian, jax.Array], jax.Array]


def softplus_gaussian(raw: jax.Array) -> D.DiagGaussian:
    """Raw maps [..., 2c] -> a diagonal Gaussian over [..., c]: the mean, and σ = softplus(r +
    SOFTPLUS_ONE) + MIN_SCALE (smooth and bounded below, unlike exp; σ = 1 at r = 0)."""
    mean, raw_scale = jnp.split(raw, 2, axis=-1)
    scale = jax.nn.softplus(raw_scale + SOFTPLUS_ONE) + MIN_SCALE
    return D.DiagGaussian(mean, 2.0 * jnp.log(scale))


def flat(gaussian: D.DiagGaussian) -> D.DiagGaussian:
    """A Gaussian over latent maps [B, h, w, c] as one over [B, h·w·c]."""
    return jax.tree.map(lambda a: a.reshape(a.shape[0], -1), gaussian)


def concat(gaussians: Sequence[D.DiagGaussian]) -> D.DiagGaussian:
    """Diagonal Gaussians over [..., k_l] as one over [..., Σ k_l]."""
    return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=-1), *gaussians)


def temperatures(temperature: float | Sequence[float], num_groups: int) -> list[float]:
    """One temperature per group from one number or a sequence of num_groups."""
    if isinstance(temperature, (int, float)):
        return [float(temperature)] * num_groups
    values = list(temperature)
    if len(values) != num_groups:
        raise ValueError(
            f"temperature has {len(values)} values; this model has {num_groups} latent groups"
        )
    return [float(t) for t in values]


def scaled_draw(prior: D.DiagGaussian, key: jax.Array, temperature: float) -> jax.Array:
    """z = μ + t·σ·ε: a prior draw with its σ scaled by the temperature t."""
    return prior.mean + temperature * prior.stddev * jax.random.normal(key, prior.mean.shape)


class Bottleneck(nn.Module):
    """VDVAE's block: GELU, 1x1 conv to `middle`, two kxk convs (k = 3, or 1 on maps of 2x2 and
    smaller), 1x1 conv to `features`; added to the input when `residual`. The last conv's
    initial weights are scaled by `last_scale` (√(1/N) for N residual blocks keeps the
    residual stream's variance from growing with depth; 0 for the prior's output)."""

    middle: int
    features: int
    residual: bool
    use_3x3: bool
    last_scale: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = (3, 3) if self.use_3x3 else (1, 1)
        h = nn.Conv(self.middle, (1, 1), dtype=self.dtype)(nn.gelu(x))
        h = nn.Conv(self.middle, kernel, dtype=self.dtype)(nn.gelu(h))
        h = nn.Conv(self.middle, kernel, dtype=self.dtype)(nn.gelu(h))
        last_init = (
            nn.initializers.zeros
            if self.last_scale == 0
            else nn.initializers.variance_scaling(self.last_scale**2, "fan_in", "truncated_normal")
        )
        h = nn.Conv(self.features, (1, 1), kernel_init=last_init, dtype=self.dtype)(nn.gelu(h))
        return x + h if self.residual else h


def resize(h: jax.Array, resolution: int) -> jax.Array:
    """Maps [B, r, r, C] -> [B, resolution, resolution, C]: average pooling down, nearest-
    neighbour repetition up (VDVAE)."""
    r = h.shape[1]
    if resolution < r:
        factor = r // resolution
        return nn.avg_pool(h, (factor, factor), (factor, factor))
    factor = resolution // r
    return jnp.repeat(jnp.repeat(h, factor, axis=1), factor, axis=2)


class TopDownVAE(nn.Module):
    """The VDVAE-style hierarchical VAE. resolutions: descending, the first the image size, each
    dividing the one before (e.g. (32, 16, 8, 4, 1)); blocks: encoder blocks and decoder blocks
    (= latent groups) at each resolution; channels: width of the residual stream at each
    resolution; latent_channels: channels of each group's latent map; bottleneck_ratio: the
    blocks' inner width over the stream's."""

    image_shape: tuple[int, int, int]
    resolutions: Sequence[int]
    blocks: Sequence[int]
    channels: Sequence[int]
    latent_channels: int
    likelihood: str
    bottleneck_ratio: float = 0.25
    gaussian_scale: float = 0.1
    mixture_components: int = 10
    dtype: Any = jnp.float32

    def setup(self):
        groups = sum(self.blocks)
        stream_scale = math.sqrt(1.0 / groups)

        def block(width, resolution, features, residual, last_scale):
            middle = max(1, int(width * self.bottleneck_ratio))
            return Bottleneck(middle, features, residual, resolution > 2, last_scale, self.dtype)

        self.input_conv = nn.Conv(self.channels[0], (3, 3), dtype=self.dtype)
        self.encoder_blocks = [
            block(width, r, width, True, stream_scale)
            for r, n, width in zip(self.resolutions, self.blocks, self.channels)
            for _ in range(n)
        ]
        self.encoder_projections = [
            nn.Conv(width, (1, 1), dtype=self.dtype) for width in self.channels[1:]
        ]
        z = self.latent_channels
        decoder = list(zip(self.resolutions, self.blocks, self.channels))[::-1]
        group_specs = [(r, width) for r, n, width in decoder for _ in range(n)]
        self.posterior_blocks = [block(w, r, 2 * z, False, 1.0) for r, w in group_specs]
        self.prior_blocks = [block(w, r, 2 * z + w, False, 0.0) for r, w in group_specs]
        self.latent_projections = [
            nn.Conv(
                w,
                (1, 1),
                kernel_init=nn.initializers.variance_scaling(
                    stream_scale**2, "fan_in", "truncated_normal"
                ),
                dtype=self.dtype,
            )
            for _, w in group_specs
        ]
        self.decoder_blocks = [block(w, r, w, True, stream_scale) for r, w in group_specs]
        self.decoder_projections = [
            nn.Conv(width, (1, 1), dtype=self.dtype) for _, _, width in decoder[1:]
        ]
        self.top = self.param(
            "top", nn.initializers.zeros, (1, decoder[0][0], decoder[0][0], decoder[0][2])
        )
        height, _, image_channels = self.image_shape
        self.output_conv = nn.Conv(
            raw_outputs(self.likelihood, image_channels, self.mixture_components), (1, 1)
        )
        self.head = LikelihoodHead(
            self.likelihood, self.gaussian_scale, image_channels, self.mixture_components
        )

    @property
    def group_sizes(self) -> tuple[int, ...]:
        """Latents per group, top first: r·r·latent_channels."""
        decoder = list(zip(self.resolutions, self.blocks))[::-1]
        return tuple(r * r * self.latent_channels for r, n in decoder for _ in range(n))

    def _bottom_up(self, x: jax.Array) -> dict[int, jax.Array]:
        """Images [N, H, W, C] -> the encoder's activations at each resolution."""
        h = self.input_conv((2.0 * x - 1.0).astype(self.dtype))
        activations, index = {}, 0
        for i, (resolution, n) in enumerate(zip(self.resolutions, self.blocks)):
            if i > 0:
                h = self.encoder_projections[i - 1](resize(h, resolution))
            for _ in range(n):
                h = self.encoder_blocks[index](h)
                index += 1
            activations[resolution] = h
        return activations

    def _top_down(
        self, activations: dict[int, jax.Array] | None, batch: int, choose: Choose, key
    ) -> tuple[list, list, list, L.Likelihood]:
        """The decoder over `batch` images, group l's code from choose(l, q_l or None, p_l,
        key_l); q_l needs the encoder's activations. Returns the posteriors (None without
        activations), priors and codes of every group, flattened [N, k_l], and p(x|z)."""
        decoder = list(zip(self.resolutions, self.blocks))[::-1]
        h = jnp.broadcast_to(self.top, (batch,) + self.top.shape[1:]).astype(self.dtype)
        posteriors, priors, codes, group = [], [], [], 0
        for i, (resolution, n) in enumerate(decoder):
            if i > 0:
                h = self.decoder_projections[i - 1](resize(h, resolution))
            for _ in range(n):
                prior_out = self.prior_blocks[group](h).astype(jnp.float32)
                z_channels = 2 * self.latent_channels
                prior = softplus_gaussian(prior_out[..., :z_channels])
                h = h + prior_out[..., z_channels:].astype(self.dtype)
                posterior = None
                if activations is not None:
                    both = jnp.concatenate([h, activations[resolution]], axis=-1)
                    posterior = softplus_gaussian(
                        self.posterior_blocks[group](both).astype(jnp.float32)
                    )
                z = choose(group, posterior, prior, jax.random.fold_in(key, group))
                h = h + self.latent_projections[group](z.astype(self.dtype))
                h = self.decoder_blocks[group](h)
                posteriors.append(None if posterior is None else flat(posterior))
                priors.append(flat(prior))
                codes.append(z.reshape(batch, -1))
                group += 1
        raw = self.output_conv(nn.gelu(h)).astype(jnp.float32)
        return posteriors, priors, codes, self.head(raw)

    def _output(self, posteriors, priors, codes, likelihood, lead) -> Any:
        return restore_batch(
            VaeOutput(
                posterior=concat(posteriors),
                prior=concat(priors),
                z=jnp.concatenate(codes, axis=-1),
                likelihood=likelihood,
            ),
            lead,
        )

    def __call__(self, x: jax.Array, key: jax.Array, num_samples: int | None = None):
        """x [B, H, W, C] -> VaeOutput over [B] (or [S, B] with num_samples S: the encoder runs
        once, the decoder on S·B copies)."""
        activations = self._bottom_up(x)
        lead = (x.shape[0],)
        if num_samples is not None:
            lead = (num_samples, x.shape[0])
            activations = {r: jnp.tile(a, (num_samples, 1, 1, 1)) for r, a in activations.items()}
        batch = math.prod(lead)
        sample = lambda group, q, p, k: q.sample(k)  # noqa: E731
        return self._output(*self._top_down(activations, batch, sample, key), lead)

    def decode(self, z: jax.Array) -> L.Likelihood:
        """p(x|z) for codes z [..., k], every group given."""
        z, lead = flatten_batch(z, 1)
        bounds = np.cumsum((0,) + self.group_sizes)

        def given(group, q, p, k):
            return z[:, bounds[group] : bounds[group + 1]].reshape(p.mean.shape)

        *_, likelihood = self._top_down(None, z.shape[0], given, jax.random.key(0))
        return restore_batch(likelihood, lead)

    def generate(
        self, key: jax.Array, n: int, temperature: float | Sequence[float] = 1.0
    ) -> L.Likelihood:
        """p(x|z) for n codes drawn top-down from the prior at the given temperature(s)."""
        t = temperatures(temperature, len(self.group_sizes))
        draw = lambda group, q, p, k: scaled_draw(p, k, t[group])  # noqa: E731
        return self._top_down(None, n, draw, key)[-1]

    def reconstruct(
        self, x: jax.Array, key: jax.Array, groups: int, temperature: float = 1.0
    ) -> L.Likelihood:
        """p(x|z) with z_l the posterior mean for the top `groups` groups and a prior draw at
        `temperature` below: x [B, H, W, C]."""

        def choose(group, q, p, k):
            return q.mean if group < groups else scaled_draw(p, k, temperature)

        return self._top_down(self._bottom_up(x), x.shape[0], choose, key)[-1]

    def encode(self, x: jax.Array) -> list[D.DiagGaussian]:
        """The posterior of each group [B, k_l], top first, every code at its posterior mean."""
        mean = lambda group, q, p, k: q.mean  # noqa: E731
        return self._top_down(self._bottom_up(x), x.shape[0], mean, jax.random.key(0))[0]


class TanhMlp(nn.Module):
    """Dense tanh layers of the given widths."""

    widths: Sequence[int]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for width in self.widths:
            h = jnp.tanh(nn.Dense(width, dtype=self.dtype)(h))
        return h


class LadderMlpVAE(nn.Module):
    """The IWAE paper's two-stochastic-layer model for 28x28 images (Burda et al. 2016, MNIST):
    x -[hidden]- z_1 -[widths of z_1]- z_2 ... with latent_dims (100, 50) bottom-up and
    hidden (200, 200): 784-200-200-z₁(100)-100-100-z₂(50), tanh, the same layers mirrored in
    the generative direction. Groups in generative order: z_L (top) ... z_1."""

    image_shape: tuple[int, int, int]
    hidden: Sequence[int]
    latent_dims: Sequence[int]  # bottom (z_1) to top
    likelihood: str
    gaussian_scale: float = 0.1
    mixture_components: int = 10
    dtype: Any = jnp.float32

    def setup(self):
        depth = len(self.hidden)
        below = [tuple(self.hidden)] + [(d,) * depth for d in self.latent_dims[:-1]]
        self.up = [TanhMlp(widths, self.dtype) for widths in below]
        self.posterior_heads = [GaussianHead(d, "diag") for d in self.latent_dims]
        # p(z_l | z_{l+1}) for every group but the top, whose prior is N(0, I).
        self.down = [TanhMlp(widths, self.dtype) for widths in below[1:]]
        self.prior_heads = [GaussianHead(d, "diag") for d in self.latent_dims[:-1]]
        self.decoder = TanhMlp(tuple(self.hidden)[::-1], self.dtype)
        height, width, channels = self.image_shape
        self.output = nn.Dense(
            height * width * raw_outputs(self.likelihood, channels, self.mixture_components)
        )
        self.head = LikelihoodHead(
            self.likelihood, self.gaussian_scale, channels, self.mixture_components
        )

    @property
    def group_sizes(self) -> tuple[int, ...]:
        return tuple(self.latent_dims)[::-1]

    def _posteriors(self, x: jax.Array, choose) -> tuple[list, list]:
        """Bottom-up q(z_l | z_{l−1}) over x [..., H, W, C]; z_l = choose(l, q_l). Lists bottom
        first."""
        h = x.reshape(x.shape[: x.ndim - 3] + (-1,))
        posteriors, codes = [], []
        for level, (up, head) in enumerate(zip(self.up, self.posterior_heads)):
            q = head(up(h.astype(self.dtype)).astype(jnp.float32))
            h = choose(level, q)
            posteriors.append(q)
            codes.append(h)
        return posteriors, codes

    def _prior(self, level: int, above: jax.Array | None) -> D.DiagGaussian:
        """p(z_level | z_level+1), or N(0, I) for the top level."""
        if above is None:
            return D.standard_normal(self.latent_dims[-1])
        return self.prior_heads[level](self.down[level](above.astype(self.dtype)))

    def _decode_x(self, z_bottom: jax.Array) -> L.Likelihood:
        raw = self.output(self.decoder(z_bottom.astype(self.dtype))).astype(jnp.float32)
        return self.head(raw.reshape(z_bottom.shape[:-1] + self.image_shape[:2] + (-1,)))

    def __call__(self, x: jax.Array, key: jax.Array, num_samples: int | None = None):
        """x [B, H, W, C] -> VaeOutput over [B] (or [S, B])."""
        sample_shape = () if num_samples is None else (num_samples,)

        def sample(level, q):
            return q.sample(jax.random.fold_in(key, level), sample_shape if level == 0 else ())

        posteriors, codes = self._posteriors(x, sample)
        levels = len(codes)
        priors = [
            self._prior(level, codes[level + 1] if level + 1 < levels else None)
            for level in range(levels)
        ]
        priors[-1] = jax.tree.map(lambda a: jnp.broadcast_to(a, codes[-1].shape), priors[-1])
        posteriors = [
            jax.tree.map(lambda a, z=z: jnp.broadcast_to(a, z.shape), q)
            for q, z in zip(posteriors, codes)
        ]
        return VaeOutput(
            posterior=concat(posteriors[::-1]),
            prior=concat(priors[::-1]),
            z=jnp.concatenate(codes[::-1], axis=-1),
            likelihood=self._decode_x(codes[0]),
            sampled_rate=True,
        )

    def _top_down(
        self, codes_top_first: list, batch: int, key: jax.Array, temperature: Sequence[float]
    ) -> L.Likelihood:
        """p(x|z) descending from the top over `batch` images: group g keeps
        codes_top_first[g] when it is not None, else draws from its prior at temperature[g]."""
        levels = len(self.latent_dims)
        above = None
        for group in range(levels):
            level = levels - 1 - group
            z = codes_top_first[group]
            if z is None:
                prior = self._prior(level, above)
                shape = (batch, self.latent_dims[level])
                prior = jax.tree.map(lambda a, shape=shape: jnp.broadcast_to(a, shape), prior)
                z = scaled_draw(prior, jax.random.fold_in(key, group), temperature[group])
            above = z
        return self._decode_x(above)

    def decode(self, z: jax.Array) -> L.Likelihood:
        """p(x|z_1) for codes z [..., k] (all groups, top first; only z_1 enters p(x|z))."""
        return self._decode_x(z[..., -self.latent_dims[0] :])

    def generate(
        self, key: jax.Array, n: int, temperature: float | Sequence[float] = 1.0
    ) -> L.Likelihood:
        t = temperatures(temperature, len(self.latent_dims))
        return self._top_down([None] * len(self.latent_dims), n, key, t)

    def reconstruct(
        self, x: jax.Array, key: jax.Array, groups: int, temperature: float = 1.0
    ) -> L.Likelihood:
        means = [q.mean for q in self.encode(x)]
        kept = [m if g < groups else None for g, m in enumerate(means)]
        t = temperatures(temperature, len(self.latent_dims))
        return self._top_down(kept, x.shape[0], key, t)

    def encode(self, x: jax.Array) -> list[D.DiagGaussian]:
        """The posterior of each group, top first, each code at its posterior mean."""
        posteriors, _ = self._posteriors(x, lambda level, q: q.mean)
        return posteriors[::-1]
