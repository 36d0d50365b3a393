"""Fashion-MNIST (28x28 grey levels) with a small conv VAE and a discretized logistic likelihood,
so the bound is a proper likelihood of the 8-bit images (reported as bits/dim).

    python launch.py --config=experiments/fashion_mnist.py
    python launch.py --config=experiments/fashion_mnist.py:tiny    # smoke run
"""

import ml_collections

from experiments import base

VARIANTS = ("tiny",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset.name = "fashion_mnist"
    config.dataset.image_size = 28
    config.model.kind = "conv"
    config.model.channels = (32, 64)
    config.model.hidden = (256,)
    config.model.latent_dim = 32
    config.model.likelihood = "discretized_logistic"
    config.train.batch_size = 128
    config.train.num_steps = 50_000
    config.train.learning_rate = 1e-3
    if "tiny" in base.variant_options(arg, VARIANTS):
        base.make_tiny(config)
    return config
