"""Evaluation suite: IWAE against ELBO and against an analytic log-likelihood, active units,
bits/dim, attribute probes, and `--mode=analyze` end to end."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import base, shapes
from vae_jax import distributions as D
from vae_jax import evaluation, train
from vae_jax import objectives as O
from vae_jax.evaluation import likelihood, probes
from vae_jax.models import VAE, make_model
from vae_jax.run import Run, load_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 20-step tiny shapes run on disk."""
    workdir = tmp_path_factory.mktemp("run")
    config = shapes.get_config("tiny")
    config.train.update(num_steps=20, eval_every=20, checkpoint_every=20)
    train.train_and_evaluate(config, workdir)
    return workdir


def log_weights(terms) -> np.ndarray:
    """log w = log p(x|z) + log p(z) − log q(z|x) from the three terms [S, B]."""
    log_px, log_pz, log_qz = (np.asarray(t, np.float64) for t in terms)
    return log_px + log_pz - log_qz


@pytest.mark.slow
def test_iwae_with_one_sample_averages_to_the_elbo_and_more_samples_tighten_it(tiny_run):
    run = load_run(tiny_run)
    x = next(iter(run.dataset("test", 32)))["image"]
    terms_fn = likelihood.make_log_weight_terms_fn(run.model)
    key = jax.random.key(0)
    # Averaged over many draws, K=1 estimates the ELBO E_q[log p(x|z)] − KL (analytic KL,
    # independent draws of z): equal within 4 combined standard errors.
    draws = log_weights(terms_fn(run.params, x, key, 400))  # [400, B]
    posterior = run.encode(x)
    z = posterior.sample(jax.random.key(1), (400,))
    log_px = np.asarray(run.decode(z).log_prob(x))  # [400, B]
    elbo = log_px.mean(0) - np.asarray(D.kl_divergence(posterior, D.standard_normal(4)))
    standard_error = np.hypot(draws.std(0), log_px.std(0)) / np.sqrt(400)
    assert np.all(np.abs(draws.mean(0) - elbo) < 4 * standard_error)


def linear_gaussian_vae(rng):
    """An MLP VAE with no hidden layers is p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I); its encoder
    is set to the exact posterior mean and the diagonal of the exact posterior covariance."""
    latent_dim, data_dim, sigma = 2, 4, 0.5
    w = rng.normal(size=(data_dim, latent_dim))
    b = rng.normal(size=data_dim)
    cov = np.linalg.inv(np.eye(latent_dim) + w.T @ w / sigma**2)
    gain = w @ cov / sigma**2  # mean = (x − b) @ gain
    config = base.get_config().model
    config.update(
        kind="mlp", hidden=(), latent_dim=latent_dim, likelihood="gaussian", gaussian_scale=sigma
    )
    model = make_model(config, (1, data_dim, 1))
    params = {
        "params": {
            "decoder": {"Dense_0": {"kernel": w.T, "bias": b}},
            "encoder": {
                "GaussianHead_0": {
                    "mean": {"kernel": gain, "bias": -b @ gain},
                    "log_var": {
                        "kernel": np.zeros((data_dim, latent_dim)),
                        "bias": np.log(np.diag(cov)),
                    },
                }
            },
        }
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    marginal_cov = w @ w.T + sigma**2 * np.eye(data_dim)
    return model, params, b, marginal_cov


@pytest.mark.slow
def test_iwae_with_1000_samples_is_within_005_nats_of_analytic_log_likelihood():
    rng = np.random.default_rng(0)
    model, params, b, marginal_cov = linear_gaussian_vae(rng)
    x = rng.multivariate_normal(b, marginal_cov, size=16)
    diff = x - b
    exact = -0.5 * (
        np.einsum("ni,ij,nj->n", diff, np.linalg.inv(marginal_cov), diff)
        + 4 * np.log(2 * np.pi)
        + np.linalg.slogdet(marginal_cov)[1]
    )
    images = jnp.asarray(x, jnp.float32).reshape(16, 1, 4, 1)
    terms_fn = likelihood.make_log_weight_terms_fn(model)
    iwae = likelihood.iwae_bound_chunked(terms_fn, params, images, jax.random.key(1), 1000, 250)
    elbo = log_weights(terms_fn(params, images, jax.random.key(2), 1000)).mean(0)
    assert np.max(np.abs(iwae - exact)) < 0.05, np.abs(iwae - exact)
    assert np.mean(elbo) < np.mean(iwae) - 0.01  # the diagonal posterior leaves a visible ELBO gap


def test_active_units_counts_the_dimensions_the_encoder_uses():
    rng = np.random.default_rng(1)
    model, params, _, _ = linear_gaussian_vae(rng)
    # Silence latent dimension 1: its posterior mean no longer depends on x.
    head = params["params"]["encoder"]["GaussianHead_0"]["mean"]
    head["kernel"] = head["kernel"].at[:, 1].set(0.0)
    x = jnp.asarray(rng.normal(size=(500, 1, 4, 1)), jnp.float32)
    means = model.apply(params, x, method=VAE.encode).mean
    count, variances = likelihood.active_units(np.asarray(means))
    assert count == 1
    assert variances[0] > 0.01 and variances[1] == 0.0


def test_a_uniform_8_bit_model_costs_exactly_8_bits_per_dim():
    """Each of the 256 levels equally likely: −log p(x) = H·W·C·ln 256 nats per image."""
    image_shape = (32, 32, 3)
    x = np.random.default_rng(3).integers(0, 256, (5,) + image_shape) / 255.0
    log_p = np.sum(np.full(x.shape, -np.log(256.0)), axis=(1, 2, 3))
    np.testing.assert_allclose(O.bits_per_dim(-log_p, image_shape), 8.0, rtol=1e-12)


def test_attribute_probe_is_accurate_for_linearly_coded_attributes_and_chance_otherwise():
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(2000, 8))
    attributes = np.stack(
        [codes[:, 0] > 0, codes[:, 3] + codes[:, 5] > 0.5, rng.random(2000) > 0.5], axis=1
    ).astype(int)
    accuracy = probes.attribute_probe_accuracy(
        codes[:1000], attributes[:1000], codes[1000:], attributes[1000:]
    )
    assert accuracy[0] > 0.97 and accuracy[1] > 0.97
    assert abs(accuracy[2] - 0.5) < 0.06


@pytest.mark.slow
def test_analyze_writes_eval_json_and_figures_and_keeps_other_steps_results(tiny_run, tmp_path):
    results = evaluation.analyze(tiny_run)
    saved = json.loads((tiny_run / "eval.json").read_text())
    assert saved["step"] == 20 and saved["iwae_examples"] == 8
    for key in (
        "elbo",
        "rate",
        "distortion",
        "iwae_nll",
        "active_units",
        "mig",
        "dci_disentanglement",
        "kl_per_dim",
    ):
        assert key in saved, key
    assert saved["iwae_nll"] == pytest.approx(results["iwae_nll"])
    assert len(saved["kl_per_dim"]) == 4
    for name in ("reconstructions", "samples_t0.7", "samples_t1", "traversals", "interpolations"):
        with Image.open(tiny_run / "figures" / f"{name}.png") as image:
            assert image.size[0] > 300, name
    # A stale eval.json of another step is kept, not overwritten.
    stale = dict(saved, step=10)
    (tiny_run / "eval.json").write_text(json.dumps(stale))
    evaluation.analyze(tiny_run)
    assert json.loads((tiny_run / "eval_step_10.json").read_text())["step"] == 10
    assert json.loads((tiny_run / "eval.json").read_text())["step"] == 20


@pytest.mark.slow
def test_analyze_command_applies_eval_overrides(tiny_run):
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--mode=analyze",
            f"--workdir={tiny_run}",
            "--config.eval.iwae_samples=3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tiny_run / "eval.json").read_text())["iwae_samples"] == 3
    assert "iwae_nll" in result.stdout


FACTOR_LEVELS = 10  # per factor; MIG's 20 bins resolve every level, so a perfect code scores 1


def factor_run(tmp_path, read_pixels: list[int]):
    """A Run whose encoder is hand-built: code d is pixel read_pixels[d] of the image (posterior
    σ = e^-5), and whose test split holds images with factor f written into pixel f, as
    f / FACTOR_LEVELS, plus one pixel of noise (pixel 5)."""
    config = shapes.get_config("tiny")
    config.model.update(kind="mlp", hidden=(), latent_dim=len(read_pixels))
    config.eval.update(analysis_examples=1000, iwae_examples=8, iwae_samples=4, batch_size=96)
    model = make_model(config.model, (64, 64, 1))
    params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), jax.random.key(0))
    kernel = np.zeros((64 * 64, len(read_pixels)), np.float32)
    kernel[read_pixels, np.arange(len(read_pixels))] = 1.0
    head = params["params"]["encoder"]["GaussianHead_0"]
    head["mean"] = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(len(read_pixels))}
    head["log_var"] = {
        "kernel": jnp.zeros_like(kernel),
        "bias": jnp.full(len(read_pixels), -10.0),
    }
    run = Run(config, 0, params, tmp_path, ema=False)
    rng = np.random.default_rng(0)
    factors = rng.integers(0, FACTOR_LEVELS, (1000, 5))
    images = np.zeros((1000, 64 * 64), np.float32)
    images[:, :5] = factors / FACTOR_LEVELS
    images[:, 5] = rng.random(1000)
    images = images.reshape(1000, 64, 64, 1)

    def dataset(split, num_examples=None):
        assert split == "test", split
        n = num_examples or 1000
        return [
            {"image": images[i : min(i + 96, n)], "factors": factors[i : min(i + 96, n)]}
            for i in range(0, n, 96)
        ]

    run.dataset = dataset
    return run


def test_a_perfectly_disentangled_encoder_scores_mig_and_dci_near_one_through_evaluate_run(
    tmp_path,
):
    results = evaluation.evaluate_run(factor_run(tmp_path, [0, 1, 2, 3, 4]), jax.random.key(0))
    assert results["mig"] > 0.9, results["mig"]
    assert results["dci_disentanglement"] > 0.9, results["dci_disentanglement"]
    assert results["num_examples"] == 1000 and results["active_units"] == 5


def test_codes_that_ignore_the_factors_score_mig_near_zero_through_evaluate_run(tmp_path):
    results = evaluation.evaluate_run(factor_run(tmp_path, [5, 5, 5, 5, 5]), jax.random.key(0))
    assert results["mig"] < 0.1, results["mig"]


def test_label_probe_reads_a_linearly_coded_class_and_falls_to_the_majority_otherwise():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, 2000)
    centres = 3.0 * np.eye(8)[:4]
    coded = centres[labels] + rng.normal(size=(2000, 8))
    metrics = probes.label_metrics(coded[:1000], labels[:1000], coded[1000:], labels[1000:])
    assert metrics["label_probe_accuracy"] > 0.9
    noise = rng.normal(size=(2000, 8))
    metrics = probes.label_metrics(noise[:1000], labels[:1000], noise[1000:], labels[1000:])
    assert abs(metrics["label_probe_accuracy"] - 0.25) < 0.06
    assert metrics["label_majority_baseline"] == pytest.approx(
        np.bincount(labels[1000:]).max() / 1000
    )
