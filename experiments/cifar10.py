"""CIFAR-10 (32x32 RGB) with a conv VAE and a discretized logistic likelihood; the test bound is
reported in bits/dim (-elbo / (32·32·3·ln 2)), the unit of the CIFAR-10 likelihood literature.

    python launch.py --config=experiments/cifar10.py
    python launch.py --config=experiments/cifar10.py:tiny          # smoke run
"""

import ml_collections

from experiments import base

VARIANTS = ("tiny",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset.name = "cifar10"
    config.dataset.image_size = 32
    config.dataset.random_flip = True
    config.model.kind = "conv"
    config.model.channels = (64, 128, 256)
    config.model.hidden = (512,)
    config.model.latent_dim = 128
    config.model.likelihood = "discretized_logistic"
    config.train.batch_size = 64
    config.train.num_steps = 200_000
    config.train.learning_rate = 5e-4
    if "tiny" in base.variant_options(arg, VARIANTS):
        base.make_tiny(config)
    return config
