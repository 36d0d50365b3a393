"""CIFAR-10 (32x32 RGB) with a VDVAE-style hierarchical VAE and a mixture of 10 discretized
logistics; the test bound is in bits/dim, the unit of the likelihood literature.

    python launch.py --config=experiments/cifar10_hvae.py
    python launch.py --config=experiments/cifar10_hvae.py:small    # sized for a CPU
    python launch.py --config=experiments/cifar10_hvae.py:tiny     # smoke run

Follows VDVAE's CIFAR-10 layout (Child 2021: resolutions 32-16-8-4-1, bottleneck blocks with a
quarter of the width inside, 16 latent channels per group, zero-initialised priors, residual
branches scaled by √(1/N), a 10-logistic mixture, gradient skipping) and Efficient-VDVAE's
Adamax (Hazami et al. 2022), at a fraction of its size: width 128 instead of 384, 2 to 8 blocks
per resolution where VDVAE has up to 21 (VDVAE: 39M parameters, 2.87 bits/dim). This config:
2.9M parameters, 2.4 GFLOP per image for one ELBO forward pass; `:small`: 0.16M parameters,
0.12 GFLOP.
"""

import ml_collections

from experiments import base

VARIANTS = ("small", "tiny")


def hierarchical(config: ml_collections.ConfigDict, pixels: int) -> ml_collections.ConfigDict:
    """The settings every hierarchical experiment shares (VDVAE's stability measures) for images
    of `pixels` = H·W·C values. VDVAE clips gradient norms at 200 and skips updates above 400
    with its loss in nats per dimension; ours is in nats per image, whose gradient is `pixels`
    times larger, so the thresholds scale with it."""
    config.model.kind = "hierarchical"
    config.model.likelihood = "discretized_mix_logistic"
    config.model.mixture_components = 10
    config.model.bottleneck_ratio = 0.25
    config.train.optimizer = "adamax"
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 100
    config.train.lr_schedule = "cosine"
    config.train.grad_clip_norm = 200.0 * pixels
    config.train.skip_grad_norm = 400.0 * pixels
    return config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    options = base.variant_options(arg, VARIANTS)
    config = hierarchical(base.get_config(), pixels=32 * 32 * 3)
    config.dataset.name = "cifar10"
    config.dataset.image_size = 32
    config.dataset.random_flip = True
    config.model.resolutions = (32, 16, 8, 4, 1)
    config.model.blocks = (8, 6, 6, 4, 2)
    config.model.channels = (128, 128, 128, 128, 128)
    config.model.latent_channels = 16
    config.train.batch_size = 32
    config.train.num_steps = 500_000
    if "small" in options:
        config.model.blocks = (2, 2, 2, 2, 1)
        config.model.channels = (48, 48, 48, 48, 48)
        config.model.latent_channels = 8
        config.train.num_steps = 20_000
    if "tiny" in options:
        base.make_tiny(config)
    return config
