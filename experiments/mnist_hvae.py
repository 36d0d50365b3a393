"""MNIST, dynamically binarised, with a VDVAE-style hierarchical VAE and Bernoulli pixels: the
likelihood setting of Efficient-VDVAE's binarized-MNIST result (79.09 nats).

    python launch.py --config=experiments/mnist_hvae.py
    python launch.py --config=experiments/mnist_hvae.py:tiny       # smoke run

Fashion-MNIST from its idx files the same way: --config.dataset.name=fashion_mnist
--config.dataset.path=/usr/share/datasets/fashion-mnist (README, Data).

Efficient-VDVAE pads MNIST to 32x32; here the resolutions are 28-14-7-1 on the images as they
are, with VDVAE's blocks (experiments/cifar10_hvae.py), width 64 and 2 to 4 blocks per
resolution. This config: 0.33M parameters, 0.16 GFLOP per image for one ELBO forward pass.
"""

import ml_collections

from experiments import base, cifar10_hvae

VARIANTS = ("tiny",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    options = base.variant_options(arg, VARIANTS)
    config = cifar10_hvae.hierarchical(base.get_config(), pixels=28 * 28)
    config.dataset.name = "mnist"
    config.dataset.image_size = 28
    config.dataset.dynamic_binarization = True
    config.model.likelihood = "bernoulli"
    config.model.resolutions = (28, 14, 7, 1)
    config.model.blocks = (2, 4, 4, 2)
    config.model.channels = (64, 64, 64, 64)
    config.model.latent_channels = 8
    config.train.batch_size = 64
    config.train.num_steps = 200_000
    if "tiny" in options:
        base.make_tiny(config)
    return config
