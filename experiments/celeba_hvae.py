"""CelebA 64x64 with a VDVAE-style hierarchical VAE and a mixture of 10 discretized logistics,
for likelihoods in bits/dim (NVAE's crop, rows 40:188 and columns 15:163, as the likelihood
papers use).

    python launch.py --config=experiments/celeba_hvae.py
    python launch.py --config=experiments/celeba_hvae.py:tiny      # smoke run

Follows Efficient-VDVAE's CelebA-64 layout (Hazami et al. 2022: resolutions 64-32-16-8-4-1,
Adamax, 1.83 bits/dim) with VDVAE's blocks (experiments/cifar10_hvae.py), scaled down: width 128
and 2 to 6 blocks per resolution. This config: 3.1M parameters, 5.0 GFLOP per image for one ELBO
forward pass.
"""

import ml_collections

from experiments import base, cifar10_hvae

VARIANTS = ("tiny",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    options = base.variant_options(arg, VARIANTS)
    config = cifar10_hvae.hierarchical(base.get_config(), pixels=64 * 64 * 3)
    config.dataset.name = "celeb_a"
    config.dataset.image_size = 64
    config.dataset.crop = "nvae"
    config.dataset.random_flip = True
    config.model.resolutions = (64, 32, 16, 8, 4, 1)
    config.model.blocks = (3, 6, 6, 6, 4, 2)
    config.model.channels = (128, 128, 128, 128, 128, 128)
    config.model.latent_channels = 16
    config.train.batch_size = 32
    config.train.num_steps = 500_000
    if "tiny" in options:
        base.make_tiny(config)
    return config
