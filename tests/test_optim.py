"""Learning-rate schedules follow their formulas, and a resumed run never changes the rate of a
step that was already scheduled."""

import json
import math

import jax
import numpy as np
import pytest

from experiments import shapes
from vae_jax import optim, train
from vae_jax.config import read_config


def train_config(**overrides):
    config = shapes.get_config("tiny").train
    config.update(overrides)
    return config


def test_linear_warmup_then_constant():
    schedule = optim.learning_rate(train_config(learning_rate=1e-3, warmup_steps=10))
    for t in (0, 3, 10, 50):
        np.testing.assert_allclose(float(schedule(t)), 1e-3 * min(1.0, t / 10), rtol=1e-6)


def test_cosine_decays_to_zero_at_the_schedule_length_after_warmup():
    config = train_config(lr_schedule="cosine", learning_rate=2e-3, warmup_steps=5, num_steps=105)
    schedule = optim.learning_rate(config)
    for t in (0, 2, 5, 30, 55, 104, 105, 200):
        if t <= 5:
            expected = 2e-3 * t / 5
        else:
            progress = min(1.0, (t - 5) / 100)
            expected = 2e-3 * 0.5 * (1 + math.cos(math.pi * progress))
        np.testing.assert_allclose(float(schedule(t)), expected, rtol=1e-5, atol=1e-9)


def test_a_fixed_schedule_length_wins_over_num_steps():
    fixed = optim.learning_rate(
        train_config(lr_schedule="cosine", num_steps=200, schedule_steps=100)
    )
    short = optim.learning_rate(train_config(lr_schedule="cosine", num_steps=100))
    for t in (0, 25, 50, 99, 150):
        assert float(fixed(t)) == float(short(t))


def optim_config(config, **train_overrides):
    train_config = config.train.copy_and_resolve_references()
    train_config.update(train_overrides)
    return train_config


@pytest.mark.slow
def test_resuming_with_more_steps_keeps_the_learning_rate_of_every_scheduled_step(tmp_path):
    """A cosine run of 6 steps resumed to 12 trains exactly like a straight 12-step run whose
    schedule was fixed at 6 (a 12-step schedule has higher rates at steps 1-6), and its
    config.json records the schedule."""
    config = shapes.get_config("tiny")
    config.train.update(lr_schedule="cosine", learning_rate=1e-2, num_steps=6)
    train.train_and_evaluate(config, tmp_path / "resumed")
    assert (
        json.loads((tmp_path / "resumed" / "config.json").read_text())["train"]["schedule_steps"]
        == 6
    )
    config.train.num_steps = 12
    resumed = train.train_and_evaluate(config, tmp_path / "resumed")
    assert read_config(tmp_path / "resumed").train.schedule_steps == 6

    config.train.schedule_steps = 6
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    stretched = optim.learning_rate(optim_config(config, schedule_steps=12))
    fixed = optim.learning_rate(optim_config(config, schedule_steps=6))
    assert float(stretched(3)) > 1.2 * float(fixed(3))  # the schedules differ where it matters
