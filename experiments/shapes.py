"""β-VAE on the built-in shapes dataset (64x64 binary images with ground-truth factors).

    python launch.py                                              # into runs/shapes
    python launch.py --config=experiments/shapes.py:tiny          # smoke run
    python launch.py --config=experiments/shapes.py --config.objective.beta=8
    python launch.py --config=experiments/shapes.py --sweep       # β × latent × seed, 45 runs
    python launch.py --config=experiments/shapes.py:factor_vae    # another method (base.METHODS)
    python launch.py --config=experiments/shapes.py:study,factor_vae --sweep   # its study grid

Convolutional encoder/decoder of Burgess et al. (2018): four 4x4 stride-2 convs 32-32-64-64,
a 256-unit dense layer, 10 latents, Bernoulli pixels, β = 4. `:study` trains with
disentanglement_lib's protocol (Adam 1e-4, 300k steps); a method variant sets objective.kind and
its sweep is that method's grid in the study × 3 seeds.
"""

import ml_collections

from experiments import base

VARIANTS = ("tiny", "study", *base.METHODS)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset.name = "shapes"
    config.dataset.image_size = 64
    config.model.latent_dim = 10
    config.model.likelihood = "bernoulli"
    config.objective.beta = 4.0
    config.train.batch_size = 64
    config.train.num_steps = 3_000
    config.train.learning_rate = 1e-3
    config.train.log_every = 50
    config.train.eval_every = 1_000
    config.train.checkpoint_every = 1_000
    config.eval.num_examples = 2_048
    config.eval.iwae_examples = 128  # x 1000 samples: about two minutes on 2 CPU cores
    # BetaVAE / FactorVAE scores from 1,000 training points, a tenth of disentanglement_lib's
    # (whose 2.9 million renders and encodings take about an hour on 2 CPU cores); :study uses
    # the library's.
    config.eval.factor_score_points = 1_000
    options = base.variant_options(arg, VARIANTS)
    if "study" in options:
        base.apply_study(config)
    if method := base.method_of(options):
        base.apply_method(config, method)
    if "tiny" in options:
        base.make_tiny(config)
    return config


def get_sweep(arg: str = "") -> list[dict]:
    """With a method variant, that method's study grid × 3 seeds (18 runs); else β × latent
    size × seed: 5 × 3 × 3 = 45 runs (see the README's Sweeps section)."""
    if method := base.method_of(base.variant_options(arg, VARIANTS)):
        return base.study_sweep(method)
    return base.beta_latent_seed_sweep((4, 10, 32))
