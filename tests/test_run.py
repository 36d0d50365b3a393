"""load_run: one call from a run directory to a model ready for analysis."""

import json

import jax
import numpy as np
import pytest

from experiments import shapes
from vae_jax import config as config_lib
from vae_jax import load_run, train
from vae_jax.config import ConfigError, read_config
from vae_jax.models import make_model

pytestmark = pytest.mark.slow  # every test here trains or starts processes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = shapes.get_config("tiny")
    config.train.update(num_steps=10, eval_every=10, checkpoint_every=5)
    state = train.train_and_evaluate(config, workdir)
    return workdir, config, state


def test_load_run_reproduces_training_time_outputs_exactly(trained):
    workdir, config, state = trained
    run = load_run(workdir)
    assert run.step == 10 and run.config.model.channels == config.model.channels
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(run.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = next(iter(run.dataset("test", 5)))["image"]
    reconstruct, _ = train.make_figure_fns(make_model(config.model, x.shape[1:]))
    np.testing.assert_array_equal(
        np.asarray(run.reconstruct(x)), np.asarray(reconstruct(state.params, x))
    )


def test_load_run_restores_an_earlier_step_and_lists_steps_when_missing(trained):
    workdir, _, _ = trained
    assert load_run(workdir, step=5).step == 5
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 7; steps: \[5, 10\]"):
        load_run(workdir, step=7)


def test_load_run_without_checkpoints_lists_what_the_directory_holds(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        load_run(tmp_path)
    train_config = shapes.get_config("tiny")
    config_lib.write_config(tmp_path, train_config)
    with pytest.raises(
        FileNotFoundError, match=r"has no checkpoints; it contains: \['config.json'"
    ):
        load_run(tmp_path)


def test_model_functions_accept_numpy_of_any_batch_size(trained):
    run = load_run(trained[0])
    images = next(iter(run.dataset("test", 5)))["image"]
    for n in (1, 3, 5):
        posterior = run.encode(np.asarray(images[:n]))
        assert posterior.mean.shape == (n, run.latent_dim)
        assert run.decode(np.zeros((n, run.latent_dim))).mean().shape == (n, 64, 64, 1)


def test_traverse_sets_each_chosen_dimension_to_each_value(trained):
    run = load_run(trained[0])
    x = next(iter(run.dataset("test", 1)))["image"][0]
    values = [-2.0, 0.0, 2.0]
    grid = np.asarray(run.traverse(x, [0, 2], values))
    assert grid.shape == (2, 3, 64, 64, 1)
    mean = np.asarray(run.encode(x[None]).mean[0])
    code = mean.copy()
    code[2] = 2.0
    np.testing.assert_allclose(grid[1, 2], np.asarray(run.decode(code[None]).mean()[0]), atol=1e-6)


def test_interpolation_ends_at_the_two_reconstructions(trained):
    run = load_run(trained[0])
    x0, x1 = next(iter(run.dataset("test", 2)))["image"]
    path = np.asarray(run.interpolate(x0, x1, 5))
    assert path.shape == (5, 64, 64, 1)
    np.testing.assert_allclose(path[0], np.asarray(run.reconstruct(x0[None]))[0], atol=1e-6)
    np.testing.assert_allclose(path[-1], np.asarray(run.reconstruct(x1[None]))[0], atol=1e-6)


def test_sampling_at_temperature_zero_decodes_the_prior_mean(trained):
    run = load_run(trained[0])
    samples = np.asarray(run.sample(jax.random.key(0), 3, temperature=0.0))
    expected = np.asarray(run.decode(np.zeros((1, run.latent_dim))).mean())
    np.testing.assert_allclose(samples, np.repeat(expected, 3, axis=0), atol=1e-6)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"model": {"latnt_dim": 4}}, "latnt_dim"),
        ({"model": {"latent_dim": "four"}}, "latent_dim"),
    ],
)
def test_a_config_json_outside_the_schema_fails_naming_the_file(tmp_path, edit, message):
    saved = shapes.get_config("tiny").to_dict()
    for section, values in edit.items():
        saved[section].update(values)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=rf"config.json does not fit .*{message}"):
        read_config(tmp_path)
