"""MNIST with dynamic binarisation and Bernoulli pixels: the IWAE paper's MLP VAE (Burda et al.
2016: 784-500-500-50; ReLU here, tanh there), or a small conv VAE.

    python launch.py --config=experiments/mnist.py
    python launch.py --config=experiments/mnist.py:conv
    python launch.py --config=experiments/mnist.py:tiny            # smoke run (also conv,tiny)

Each training image is re-binarised every time it is seen (pixel = 1 with probability equal to
its intensity); the test set is binarised once, with a fixed seed. Log-likelihoods are in nats.
"""

import ml_collections

from experiments import base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    options = set(arg.split(",")) - {""}
    config = base.get_config()
    config.dataset.name = "mnist"
    config.dataset.image_size = 28
    config.dataset.dynamic_binarization = True
    config.model.kind = "mlp"
    config.model.hidden = (500, 500)
    config.model.latent_dim = 50
    config.model.likelihood = "bernoulli"
    config.train.batch_size = 100
    config.train.num_steps = 100_000
    config.train.learning_rate = 1e-3
    if "conv" in options:
        config.model.kind = "conv"
        config.model.channels = (32, 64)
        config.model.hidden = (256,)
    if "tiny" in options:
        base.make_tiny(config)
    return config
