"""β-VAE on the built-in shapes dataset (64x64 binary images with ground-truth factors).

    python launch.py                                              # into runs/shapes
    python launch.py --config=experiments/shapes.py:tiny          # smoke run
    python launch.py --config=experiments/shapes.py --config.objective.beta=8
    python launch.py --config=experiments/shapes.py --sweep       # β × latent × seed, 45 runs
    python launch.py --config=experiments/shapes.py:factor_vae    # another method (base.METHODS)
    python launch.py --config=experiments/shapes.py:study,factor_vae --sweep   # its study grid

Convolutional encoder/decoder of Burgess et al. (2018): four 4x4 stride-2 convs 32-32-64-64,
a 256-unit dense layer, 10 latents, Bernoulli pixels, β = 4. `:study` trains with
disentanglement_lib's protocol (Adam 1e-4, 300k steps) and scores with its metric protocol
(base.apply_study); a method variant sets objective.kind and its sweep is that method's grid in
the study × 3 seeds.
"""

import ml_collections

from experiments import base

VARIANTS = base.FACTOR_VARIANTS


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return base.factor_experiment("shapes", arg)


def get_sweep(arg: str = "") -> list[dict]:
    """With a method variant, that method's study grid × 3 seeds (18 runs); else β × latent
    size × seed: 5 × 3 × 3 = 45 runs (see the README's Sweeps section)."""
    if base.method_of(base.variant_options(arg, VARIANTS)):
        return base.factor_sweep(arg)
    return base.beta_latent_seed_sweep((4, 10, 32))
