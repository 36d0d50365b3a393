"""load_run: one call from a run directory to a model ready for analysis."""

import json

import jax
import numpy as np
import pytest

from experiments import shapes
from vae_jax import config as config_lib
from vae_jax import distributions as D
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
    assert run.ema  # the averaged parameters by default
    for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(run.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = next(iter(run.dataset("test", 5)))["image"]
    reconstruct, _ = train.make_figure_fns(make_model(config.model, x.shape[1:]))
    np.testing.assert_array_equal(
        np.asarray(run.reconstruct(x)), np.asarray(reconstruct(state.ema_params, x))
    )


def test_load_run_gives_the_raw_parameters_with_ema_false(trained):
    workdir, _, state = trained
    raw = load_run(workdir, ema=False)
    assert not raw.ema
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(raw.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    averaged = jax.tree.leaves(load_run(workdir).params)
    assert any(not np.array_equal(a, b) for a, b in zip(averaged, jax.tree.leaves(raw.params)))


def test_available_steps_and_the_best_checkpoint(trained):
    workdir, _, _ = trained
    run = load_run(workdir)
    assert run.available_steps == [5, 10]
    assert load_run(workdir, step="best").step == 10  # the only periodic evaluation


def test_elbo_per_example_is_log_likelihood_minus_kl_at_the_sampled_code(trained):
    workdir, _, _ = trained
    run = load_run(workdir)
    x = next(iter(run.dataset("test", 6)))["image"]
    key = jax.random.key(3)
    elbo = np.asarray(run.elbo(x, key))
    posterior = run.encode(x)
    z = posterior.sample(key)
    kl = np.asarray(D.kl_divergence(posterior, D.standard_normal(run.latent_dim)), np.float64)
    expected = np.asarray(run.decode(z).log_prob(x), np.float64) - kl
    assert elbo.shape == (6,)
    np.testing.assert_allclose(elbo, expected, rtol=1e-5)


def test_log_likelihood_is_the_logsumexp_of_importance_weights(trained):
    """Against a float64 reference built from encode / decode / the prior: log (1/K) Σ w_k."""
    workdir, _, _ = trained
    run = load_run(workdir)
    x = next(iter(run.dataset("test", 4)))["image"]
    key = jax.random.key(5)
    got = run.log_likelihood(x, 50, key, chunk_size=50)  # one chunk: its key is fold_in(key, 0)
    posterior = run.encode(x)
    z = posterior.sample(jax.random.fold_in(key, 0), (50,))
    log_w = (
        np.asarray(run.decode(z).log_prob(x), np.float64)
        + np.asarray(D.standard_normal(run.latent_dim).log_prob(z), np.float64)
        - np.asarray(posterior.log_prob(z), np.float64)
    )
    expected = np.log(np.mean(np.exp(log_w - log_w.max(0)), axis=0)) + log_w.max(0)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_load_run_restores_an_earlier_step_and_lists_steps_when_missing(trained):
    workdir, _, _ = trained
    assert load_run(workdir, step=5).step == 5
    with pytest.raises(
        FileNotFoundError, match=r"no checkpoint at step 7; steps: \[5, 10\], or 'best'"
    ):
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


def test_sample_draws_binary_images_from_a_bernoulli_decoder_or_returns_its_mean(trained):
    workdir, _, _ = trained
    run = load_run(workdir)
    key = jax.random.key(4)
    drawn = np.asarray(run.sample(key, 6, mean=False))
    means = np.asarray(run.sample(key, 6))
    assert drawn.shape == means.shape == (6, 64, 64, 1)
    assert set(np.unique(drawn)) <= {0.0, 1.0}
    assert np.all((means > 0) & (means < 1))  # sigmoid probabilities, not draws
