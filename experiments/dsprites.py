"""Disentangling methods on dSprites (TFDS `dsprites`, Matthey et al. 2017): 737,280 64x64 binary
sprites, 5 ground-truth factors.

    python launch.py --config=experiments/dsprites.py                     # β-VAE, 3,000 steps
    python launch.py --config=experiments/dsprites.py:factor_vae          # another method
    python launch.py --config=experiments/dsprites.py:study,factor_vae --sweep  # its grid
    python launch.py --config=experiments/dsprites.py:tiny                # smoke run

Needs dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5 in the TFDS manual folder (README, Data).

The model and variants are those of experiments/shapes.py (base.factor_experiment); the sweep
is a method's grid in disentanglement_lib's study × 3 seeds (β-VAE's without a method variant).
"""

import ml_collections

from experiments import base

VARIANTS = base.FACTOR_VARIANTS


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return base.factor_experiment("dsprites", arg)


def get_sweep(arg: str = "") -> list[dict]:
    return base.factor_sweep(arg)
