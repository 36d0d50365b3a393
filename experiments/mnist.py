"""MNIST with dynamic binarisation and Bernoulli pixels: an MLP VAE (784-500-500-50, ReLU), the
IWAE paper's two-stochastic-layer model (Burda et al. 2016: 784-200-200-z₁(100)-100-100-z₂(50),
tanh), or a small conv VAE; each trained on the ELBO or, with `iwae`, on the IWAE bound with
k = 5 samples.

    python launch.py --config=experiments/mnist.py
    python launch.py --config=experiments/mnist.py:ladder          # two stochastic layers
    python launch.py --config=experiments/mnist.py:ladder,iwae     # ... trained with IWAE-5
    python launch.py --config=experiments/mnist.py:conv
    python launch.py --config=experiments/mnist.py:tiny            # smoke run (also conv,tiny)
    python launch.py --config=experiments/mnist.py:paper           # then --mode=analyze

Fashion-MNIST or KMNIST the same way, from a folder of their idx files (README, Data):
--config.dataset.name=fashion_mnist --config.dataset.path=/usr/share/datasets/fashion-mnist

`:paper` records the IWAE paper's evaluation protocol in the run's config, which --mode=analyze
then uses: the bound with K = 5,000 importance samples on all 10,000 test images (the default is
K = 1,000 on the first 1,000). For a run trained without it, pass the same settings to analyze:
--config.eval.iwae_samples=5000 --config.eval.iwae_examples=10000.

Each training image is re-binarised every time it is seen (pixel = 1 with probability equal to
its intensity); the test set is binarised once, with a fixed seed. Log-likelihoods are in nats.
"""

import ml_collections

from experiments import base

VARIANTS = ("conv", "ladder", "iwae", "paper", "tiny")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    options = base.variant_options(arg, VARIANTS)
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
    if "ladder" in options:
        config.model.kind = "ladder_mlp"
        config.model.hidden = (200, 200)
        config.model.latent_dims = (100, 50)
    if "iwae" in options:
        config.objective.iwae_samples = 5
    if "paper" in options:
        config.eval.update(iwae_samples=5_000, iwae_examples=10_000, analysis_examples=None)
    if "tiny" in options:
        base.make_tiny(config)
    return config
