"""FactorVAE's discriminator (Kim & Mnih 2018): tells codes z ~ q(z) from codes whose dimensions
were permuted independently across the batch (samples of Π_d q(z_d))."""

from __future__ import annotations

import jax
from flax import linen as nn

# Kim & Mnih's architecture, as in disentanglement_lib: 6 layers of 1000 units, leaky ReLU
# (slope 0.2), two logits (class 0: real, class 1: permuted).
LAYERS = 6
WIDTH = 1000
LEAKY_SLOPE = 0.2


class Discriminator(nn.Module):
    """Codes [B, k] -> logits [B, 2]."""

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z
        for _ in range(LAYERS):
            h = nn.leaky_relu(nn.Dense(WIDTH)(h), LEAKY_SLOPE)
        return nn.Dense(2)(h)
