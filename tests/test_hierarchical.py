"""Hierarchical models: the top-down (VDVAE-style) VAE and the IWAE paper's two-layer ladder."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import config as config_lib
from vae_jax.models import make_model

IMAGE_SHAPE = (8, 8, 3)


def top_down_model():
    m = config_lib.get_config().model
    m.update(
        kind="hierarchical",
        resolutions=(8, 4, 1),
        blocks=(1, 2, 1),
        channels=(8, 8, 8),
        latent_channels=2,
        likelihood="discretized_mix_logistic",
        mixture_components=2,
    )
    return make_model(m, IMAGE_SHAPE)


def ladder_model():
    m = config_lib.get_config().model
    m.update(kind="ladder_mlp", hidden=(16, 16), latent_dims=(6, 3), likelihood="bernoulli")
    return make_model(m, (4, 4, 1))


def images(shape, batch=3, seed=1):
    levels = jax.random.randint(jax.random.key(seed), (batch,) + shape, 0, 256)
    return levels.astype(jnp.float32) / 255.0


def initialised(model, x):
    return jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))


@functools.cache
def model_and_params(make):
    """(model, its image shape, initial parameters): initialised once per test process, since
    compiling the top-down model's initialisation takes seconds."""
    model = make()
    shape = IMAGE_SHAPE if make is top_down_model else (4, 4, 1)
    return model, shape, initialised(model, images(shape))


def jitted(model, method, *static):
    """model.apply(params, *args, method=method), jitted (arguments `static` by position)."""
    return jax.jit(functools.partial(model.apply, method=method), static_argnums=static)


def test_top_down_groups_are_one_per_decoder_block_top_first():
    model = top_down_model()
    assert model.group_sizes == (1 * 2, 4 * 4 * 2, 4 * 4 * 2, 8 * 8 * 2)


def test_top_down_closed_form_rate_matches_the_sampled_log_density_ratio():
    """E_q[Σ_l KL(q_l || p_l)] = E_q[log q(z|x) − log p(z)] when each group's prior and posterior
    condition on the same sampled groups above: 500 samples per image, within 4 s.e. The
    parameters are perturbed so that the priors (zero at initialisation) depend on the groups
    above."""
    model, _, params = model_and_params(top_down_model)
    x = images(IMAGE_SHAPE, batch=2)
    rng = np.random.default_rng(8)
    params = jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape).astype(np.float32), params)

    @jax.jit
    def rates(params, key):
        out = model.apply(params, x, key, 500)  # over [S, B]
        _, log_p, log_q = out.log_weight_terms(x)
        return out.elbo_terms(x).rate, log_p, log_q

    closed_form, log_p, log_q = (
        np.asarray(a, np.float64) for a in rates(params, jax.random.key(2))
    )
    difference = (log_q - log_p) - closed_form  # mean 0 if the KL is that of these densities
    standard_error = difference.std(0) / np.sqrt(difference.shape[0])
    assert np.all(np.abs(difference.mean(0)) < 4 * standard_error + 1e-3), (
        difference.mean(0),
        standard_error,
    )
    assert np.all(closed_form.mean(0) > 1.0)  # a rate far from 0, so the check has power


@pytest.mark.parametrize("make", [top_down_model, ladder_model])
def test_decoding_the_sampled_codes_gives_the_forward_passes_likelihood(make):
    model, shape, params = model_and_params(make)
    x = images(shape)
    out = jitted(model, "__call__")(params, x, jax.random.key(3))
    decoded = jitted(model, "decode")(params, out.z)
    np.testing.assert_allclose(
        np.asarray(decoded.log_prob(x)), np.asarray(out.likelihood.log_prob(x)), rtol=1e-5
    )


@pytest.mark.parametrize("make", [top_down_model, ladder_model])
def test_reconstruct_keeps_the_top_groups_and_draws_the_rest_from_the_prior(make):
    model, shape, params = model_and_params(make)
    x = images(shape, batch=2)
    key = jax.random.key(4)
    groups = len(model.group_sizes)
    reconstruct = jitted(model, "reconstruct", 3)
    none_kept = reconstruct(params, x, key, 0).mean()
    prior_draw = jitted(model, "generate", 2)(params, key, 2).mean()
    np.testing.assert_allclose(np.asarray(none_kept), np.asarray(prior_draw), atol=1e-6)
    means = jitted(model, "encode")(params, x)
    assert [q.mean.shape[-1] for q in means] == list(model.group_sizes)
    all_kept = reconstruct(params, x, key, groups).mean()
    codes = jnp.concatenate([q.mean for q in means], axis=-1)
    at_means = jitted(model, "decode")(params, codes).mean()
    np.testing.assert_allclose(np.asarray(all_kept), np.asarray(at_means), atol=1e-6)


def test_generate_takes_one_temperature_per_group_and_zero_is_the_prior_mean_path():
    model, _, params = model_and_params(top_down_model)
    groups = len(model.group_sizes)
    generate = jitted(model, "generate", 2, 3)
    cold = [generate(params, jax.random.key(k), 2, (0.0,) * groups).mean() for k in (5, 6)]
    np.testing.assert_allclose(np.asarray(cold[0]), np.asarray(cold[1]), atol=1e-6)
    with pytest.raises(ValueError, match=f"has 2 values; this model has {groups} latent groups"):
        model.apply(params, jax.random.key(5), 2, [1.0, 1.0], method="generate")


def numpy_ladder_log_weight(params, x, z1, z2):
    """log p(x|z1) + log p(z1|z2) + log N(z2; 0, I) − log q(z1|x) − log q(z2|z1) of the ladder
    (hidden (16, 16), latents (6, 3), Bernoulli pixels) in float64 numpy: [...]."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])

    def tanh_mlp(layers, h):
        for name in sorted(layers):
            h = np.tanh(h @ layers[name]["kernel"] + layers[name]["bias"])
        return h

    def gaussian(head, h, z):
        mean = h @ head["mean"]["kernel"] + head["mean"]["bias"]
        log_var = np.clip(h @ head["log_var"]["kernel"] + head["log_var"]["bias"], -10, 10)
        return np.sum(-0.5 * ((z - mean) ** 2 / np.exp(log_var) + log_var + np.log(2 * np.pi)), -1)

    flat_x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    log_q1 = gaussian(p["posterior_heads_0"], tanh_mlp(p["up_0"], flat_x), z1)
    log_q2 = gaussian(p["posterior_heads_1"], tanh_mlp(p["up_1"], z1), z2)
    log_p1 = gaussian(p["prior_heads_0"], tanh_mlp(p["down_0"], z2), z1)
    log_p2 = np.sum(-0.5 * (z2**2 + np.log(2 * np.pi)), -1)
    logits = tanh_mlp(p["decoder"], z1) @ p["output"]["kernel"] + p["output"]["bias"]
    log_px = np.sum(flat_x * logits - np.logaddexp(0, logits), -1)
    return log_px + log_p1 + log_p2 - log_q1 - log_q2


def test_ladder_log_weights_match_a_float64_numpy_implementation_of_the_paper_model():
    model, shape, params = model_and_params(ladder_model)
    x = images(shape)
    out = model.apply(params, x, jax.random.key(7))
    assert out.sampled_rate  # q(z2|z1) conditions on a sample p(z1|z2) is scored at
    z2, z1 = np.split(np.asarray(out.z, np.float64), [3], axis=-1)  # top group first
    log_px, log_pz, log_qz = out.log_weight_terms(x)
    want = numpy_ladder_log_weight(params, x, z1, z2)
    np.testing.assert_allclose(np.asarray(log_px + log_pz - log_qz), want, rtol=1e-4, atol=1e-3)
    terms = out.elbo_terms(x)
    np.testing.assert_allclose(np.asarray(terms.elbo), want, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_a_hierarchical_run_trains_analyzes_and_loads_with_its_latent_groups(tmp_path):
    """The ladder on an idx folder (generated): training and validation log each group's rate,
    --mode=analyze writes them with their shares and the group figures, load_run works per
    group."""
    from test_idx import write_idx_folder

    from experiments import mnist
    from vae_jax import evaluation, load_run, train
    from vae_jax.writers import read_metrics

    write_idx_folder(tmp_path / "data", gzipped=True)
    config = mnist.get_config("ladder,tiny")
    config.dataset.update(name="fashion_mnist", path=str(tmp_path / "data"))
    workdir = tmp_path / "run"
    train.train_and_evaluate(config, workdir)
    groups = len(config.model.latent_dims)
    logged = {key for record in read_metrics(workdir) for key in record}
    assert {f"rate_group_{groups - 1}", f"validation/rate_group_{groups - 1}"} <= logged

    results = evaluation.analyze(workdir)
    rates = [results[f"rate_group_{g}"] for g in range(groups)]
    np.testing.assert_allclose(sum(rates), results["rate"], rtol=1e-4)
    shares = [results[f"rate_share_group_{g}"] for g in range(groups)]
    np.testing.assert_allclose(sum(shares), 1.0, rtol=1e-6)
    assert "active_units" not in results
    for name in ("group_rates", "group_reconstructions", "samples_t1", "reconstructions"):
        assert (workdir / "figures" / f"{name}.png").is_file(), name

    run = load_run(workdir)
    assert [q.mean.shape for q in run.encode(np.zeros((2, 28, 28, 1)))] == [(2, 4), (2, 8)]
    assert run.sample(jax.random.key(0), 3, temperature=[1.0, 0.5]).shape == (3, 28, 28, 1)
    x = next(iter(run.dataset("test", 2)))["image"]
    assert run.reconstruct(x, groups=1).shape == x.shape
    assert np.all(np.isfinite(run.log_likelihood(x, 4)))
