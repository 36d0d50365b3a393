"""The optimizer and its learning-rate schedule, built from the `train` config section.

The schedule's length is train.schedule_steps, fixed at the run's start (num_steps unless set)
and recorded in config.json: training longer on resume appends steps, and never changes the
rate of a step already scheduled.
"""

from __future__ import annotations

import ml_collections
import optax


def schedule_length(train_config: ml_collections.ConfigDict) -> int:
    """train.schedule_steps, or num_steps before a run has fixed it."""
    t = train_config
    return t.schedule_steps if t.schedule_steps is not None else t.num_steps


def learning_rate(train_config: ml_collections.ConfigDict) -> optax.ScalarOrSchedule:
    """The rate at each update: constant, or a linear warm-up from 0 over train.warmup_steps,
    then constant or (lr_schedule="cosine") a cosine decay to 0 at schedule_length(t) and 0
    after it."""
    t = train_config
    if t.lr_schedule == "cosine":
        decay_steps = max(schedule_length(t), t.warmup_steps + 1)
        return optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, t.warmup_steps, decay_steps)
    if t.warmup_steps > 0:
        return optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps)
    return t.learning_rate


# train.optimizer: Adam, or Adamax (Adam with an infinity-norm second moment), which VDVAE and
# Efficient-VDVAE train their hierarchical models with for its stability.
OPTIMIZERS = {"adam": optax.adam, "adamax": optax.adamax}


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """train.optimizer at learning_rate(train_config), after global-norm clipping when
    grad_clip_norm is set."""
    optimizer = OPTIMIZERS[train_config.optimizer](learning_rate(train_config))
    if train_config.grad_clip_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm), optimizer)


# FactorVAE's discriminator trains with its own Adam (Kim & Mnih 2018, as in disentanglement_lib).
DISCRIMINATOR_LEARNING_RATE = 1e-4
DISCRIMINATOR_ADAM_BETAS = (0.5, 0.9)


def discriminator_optimizer() -> optax.GradientTransformation:
    """Adam(1e-4, β1 = 0.5, β2 = 0.9) for FactorVAE's discriminator."""
    b1, b2 = DISCRIMINATOR_ADAM_BETAS
    return optax.adam(DISCRIMINATOR_LEARNING_RATE, b1=b1, b2=b2)
