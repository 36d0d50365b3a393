"""Disentangling methods on 3D Shapes (TFDS `shapes3d`, Kim & Mnih 2018): 480,000 64x64 RGB
renders, 6 ground-truth factors.

    python launch.py --config=experiments/shapes3d.py                     # β-VAE, 3,000 steps
    python launch.py --config=experiments/shapes3d.py:factor_vae          # another method
    python launch.py --config=experiments/shapes3d.py:study,factor_vae --sweep  # its grid
    python launch.py --config=experiments/shapes3d.py:tiny                # smoke run

Needs 3dshapes.h5 in the TFDS manual folder (README, Data). Bernoulli pixels on RGB
intensities, as in disentanglement_lib.

The model and variants are those of experiments/shapes.py (base.factor_experiment); the sweep
is a method's grid in disentanglement_lib's study × 3 seeds (β-VAE's without a method variant).
"""

import ml_collections

from experiments import base

VARIANTS = base.FACTOR_VARIANTS


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return base.factor_experiment("shapes3d", arg)


def get_sweep(arg: str = "") -> list[dict]:
    return base.factor_sweep(arg)
