"""Convolutional VAE on CelebA 64x64 (center crop 148, resize to 64).

    python launch.py --config=experiments/celeba.py
    python launch.py --config=experiments/celeba.py:tiny          # smoke run
    python launch.py --config=experiments/celeba.py --sweep       # β × latent × seed, 60 runs

Four 4x4 stride-2 convs 32-64-128-256 to 4x4, a 512-unit dense layer, 128 latents, and a
discretized logistic likelihood with a per-pixel scale (reports bits/dim). Adam 5e-4, batch 64.
CelebA must be on disk: see the README's Data section.
"""

import ml_collections

from experiments import base

VARIANTS = ("tiny",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset.name = "celeb_a"
    config.dataset.image_size = 64
    config.dataset.crop = "center148"
    config.dataset.random_flip = True
    config.model.latent_dim = 128
    config.model.channels = (32, 64, 128, 256)
    config.model.hidden = (512,)
    config.model.likelihood = "discretized_logistic"
    config.objective.beta = 1.0
    config.train.batch_size = 64
    config.train.num_steps = 100_000
    config.train.learning_rate = 5e-4
    if "tiny" in base.variant_options(arg, VARIANTS):
        base.make_tiny(config)
    return config


def get_sweep(arg: str = "") -> list[dict]:
    """β × latent size × seed: 5 × 4 × 3 = 60 runs (see the README's Sweeps section), for every
    variant."""
    base.variant_options(arg, VARIANTS)
    return base.beta_latent_seed_sweep((16, 32, 64, 128))
