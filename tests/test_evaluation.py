"""Evaluation suite: IWAE against ELBO and against an analytic log-likelihood, active units,
bits/dim, attribute probes, and `--mode=analyze` end to end."""

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import base, shapes
from vae_jax import config as config_lib
from vae_jax import data, evaluation, train
from vae_jax import distributions as D
from vae_jax import objectives as O
from vae_jax.data import shapes as shapes_data
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
    # A few fixed-factor points: disentanglement_lib's 10,000 would render 2.9 million images.
    few_points = {"eval.factor_score_points": 20}
    results = evaluation.analyze(tiny_run, eval_overrides=few_points)
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
        "sap_score",
        "modularity",
        "explicitness",
        "beta_vae_score",
        "factor_vae_score",
        "kl_per_dim",
    ):
        assert key in saved, key
    assert saved["factor_score_points"] == 20
    assert saved["iwae_nll"] == pytest.approx(results["iwae_nll"])
    assert len(saved["kl_per_dim"]) == 4
    for name in ("reconstructions", "samples_t0.7", "samples_t1", "traversals", "interpolations"):
        with Image.open(tiny_run / "figures" / f"{name}.png") as image:
            assert image.size[0] > 300, name
    # A stale eval.json of another step is kept, not overwritten.
    stale = dict(saved, step=10)
    (tiny_run / "eval.json").write_text(json.dumps(stale))
    evaluation.analyze(tiny_run, eval_overrides=few_points)
    assert json.loads((tiny_run / "eval_step_10.json").read_text())["step"] == 10
    assert json.loads((tiny_run / "eval.json").read_text())["step"] == 20


def cache_with_weights(root: Path) -> Path:
    """An XDG cache root holding (a link to) the fetched Inception weights and nothing else."""
    from vae_jax import fid

    weights = fid.check_weights()
    (root / "vae_jax").mkdir(parents=True)
    (root / "vae_jax" / weights.name).symlink_to(weights)
    return root


def test_analyze_reports_fid_and_kid_per_temperature_and_caches_the_reference(
    tiny_run, tmp_path, monkeypatch
):
    """Real Inception weights on 4 samples per temperature and 4 test images: the numbers, the
    protocol line, and reference features read back from the cache on the next call. FID's
    2048x2048 scipy sqrtm (about 20 s each here) is swapped for the float64 eigendecomposition
    route of tests/test_fid.py, equal to it within 1e-8 there."""
    from test_fid import numpy_frechet_distance

    from vae_jax import fid
    from vae_jax.evaluation import sample_quality

    monkeypatch.setattr(fid, "frechet_distance", numpy_frechet_distance)

    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_with_weights(tmp_path / "cache")))
    overrides = {
        "eval.fid_samples": 4,
        "eval.fid_temperatures": (0.5,),  # each FID takes a 2048x2048 sqrtm: ~20 s
        "eval.factor_score_points": 20,
    }
    results = evaluation.analyze(workdir, eval_overrides=overrides)
    saved = json.loads((workdir / "eval.json").read_text())
    for name in ("t0.5", "reconstructions"):
        assert np.isfinite(saved[f"fid_{name}"]) and saved[f"fid_{name}"] > 0, name
        assert saved[f"kid_{name}_sd"] >= 0, name
    assert "4 generated vs 4 test images of shapes" in saved["fid_protocol"]
    assert "FID of samples at T 0.5" in evaluation.format_table(results)

    run = load_run(workdir)
    run.config.eval.fid_samples = 4

    def not_again(what, images, count):
        raise AssertionError("the reference features were computed again")

    cached = sample_quality.reference_features(run, not_again)
    assert cached.shape == (4, 2048)
    run.config.eval.fid_samples = 8  # another protocol: computed anew
    with pytest.raises(AssertionError, match="computed again"):
        sample_quality.reference_features(run, not_again)


def test_analyze_without_the_weights_fails_before_any_work(tiny_run, tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    (workdir / "eval.json").unlink(missing_ok=True)  # another test may have analysed tiny_run
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="python -m vae_jax.fid fetch"):
        evaluation.analyze(workdir, eval_overrides={"eval.fid_samples": 16})
    assert not (workdir / "eval.json").exists()


@pytest.mark.slow
def test_analyze_command_applies_eval_overrides(tiny_run):
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--mode=analyze",
            f"--workdir={tiny_run}",
            "--config.eval.iwae_samples=3",
            "--config.eval.factor_score_points=20",
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


SIZES = np.array(shapes_data.FACTOR_SIZES)
# A uniform index in 0..size−1 has mean (size − 1)/2 and variance (size² − 1)/12.
MEANS, STDS = (SIZES - 1) / 2, np.sqrt((SIZES**2 - 1) / 12)
NOISE = 0.01  # s.d. added to every code


def factor_pixels(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Images [N, 64, 64, 1] standing in for shapes renders: pixel f holds factor f as
    (index + 0.5) / size, pixels 5, 6, ... hold uniform noise."""
    images = np.zeros((len(factors), 64 * 64), np.float32)
    images[:, :5] = (factors + 0.5) / SIZES
    images[:, 5:32] = rng.random((len(factors), 27))
    return images.reshape(-1, 64, 64, 1)


def hadamard_mixing() -> np.ndarray:
    """M [8, 5]: the first five columns of the 8x8 Sylvester Hadamard matrix over √5, every
    code ±1/√5 times every standardised factor (see tests/test_disentanglement.py)."""
    h = np.array([[1.0]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    return h[:, :5] / np.sqrt(5)


def factor_run(tmp_path, monkeypatch, mixing: np.ndarray | None) -> Run:
    """A shapes Run whose images carry their factors in pixels (`factor_pixels`, for the test
    split and for data.images_for_factors alike) and whose encoder is hand-built: codes =
    mixing @ standardised factors + N(0, NOISE²) noise read from the noise pixels, posterior
    σ = e^-5; mixing [k, 5], None: codes of noise only."""
    latent_dim = 5 if mixing is None else len(mixing)
    mixing = np.zeros((latent_dim, 5)) if mixing is None else mixing
    config = shapes.get_config("tiny")
    config.model.update(kind="mlp", hidden=(), latent_dim=latent_dim)
    config.eval.update(
        analysis_examples=1000,
        iwae_examples=8,
        iwae_samples=4,
        batch_size=500,
        factor_score_points=200,
    )
    model = make_model(config.model, (64, 64, 1))
    params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), jax.random.key(0))
    # pixel p = (f + 0.5) / size, so (f − mean) / s.d. = (size p − 0.5 − mean) / s.d.
    kernel = np.zeros((64 * 64, latent_dim), np.float32)
    kernel[:5] = (mixing * SIZES / STDS).T
    bias = mixing @ (-(0.5 + MEANS) / STDS)
    noise = NOISE * np.sqrt(12)  # uniform noise pixels have s.d. 1 / √12
    kernel[5 + np.arange(latent_dim), np.arange(latent_dim)] = noise
    bias -= noise / 2
    head = params["params"]["encoder"]["GaussianHead_0"]
    head["mean"] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias, jnp.float32)}
    head["log_var"] = {"kernel": jnp.zeros_like(kernel), "bias": jnp.full(latent_dim, -10.0)}
    run = Run(config, 0, params, tmp_path, ema=False)
    rng = np.random.default_rng(0)
    monkeypatch.setattr(data, "images_for_factors", lambda _, factors: factor_pixels(factors, rng))
    factors = np.stack([rng.integers(0, size, 1000) for size in SIZES], axis=1)
    images = factor_pixels(factors, rng)

    def dataset(split, num_examples=None):
        assert split == "test", split
        n = num_examples or 1000
        batches = [
            {"image": images[i : min(i + 500, n)], "factors": factors[i : min(i + 500, n)]}
            for i in range(0, n, 500)
        ]
        return data.EvalBatches(lambda: iter(batches), n)

    run.dataset = dataset
    return run


def test_a_perfectly_disentangled_encoder_scores_every_metric_near_its_ceiling_through_evaluate_run(
    tmp_path, monkeypatch
):
    # What a perfect code can score on the shapes factors from 1,000 test codes (the predictors
    # fitted on 500): MIG 0.82, as 20 bins keep log 20 of the 40 orientations' log 40 nats and
    # the plug-in MI of an independent code is biased up by about (20 − 1)(40 − 1) / 2N = 0.37
    # nats; SAP 0.17 (0.245 from 10,000 codes): one-code linear classifiers read few values
    # of a many-valued factor (see test_disentanglement); explicitness 0.86 with the library's
    # one-vs-rest logistic regressions (0.91 multinomial); the others ~1.
    results = evaluation.evaluate_run(
        factor_run(tmp_path, monkeypatch, np.eye(5)), jax.random.key(0)
    )

    expected = {
        "mig": (0.75, 0.92),
        "dci_disentanglement": (0.85, 1.0),
        "sap_score": (0.12, 0.27),
        "modularity": (0.97, 1.0),
        "explicitness": (0.83, 1.0),
        "beta_vae_score": (1.0, 1.0),
        "factor_vae_score": (1.0, 1.0),
    }
    for key, (low, high) in expected.items():
        assert low <= results[key] <= high, f"{key} = {results[key]}, expected in [{low}, {high}]"
    assert results["num_examples"] == 1000 and results["active_units"] == 5
    assert results["factor_score_points"] == 200


def test_an_equal_weight_mixing_of_all_factors_scores_near_chance_through_evaluate_run(
    tmp_path, monkeypatch
):
    # Every code is ±1/√5 times every factor. Explicitness (linear decodability) is untouched
    # by an invertible mixing; the disentanglement scores drop to about chance (BetaVAE and
    # FactorVAE: 1/5). Modularity stays at 0.59 with 1,000 codes (0.22 with 10,000): the MI
    # estimator's bias grows with a factor's number of values, which makes the rows uneven.
    results = evaluation.evaluate_run(
        factor_run(tmp_path, monkeypatch, hadamard_mixing()), jax.random.key(0)
    )

    expected = {
        "mig": (0.0, 0.1),
        "dci_disentanglement": (0.0, 0.1),
        "sap_score": (0.0, 0.03),
        "modularity": (0.0, 0.7),
        "explicitness": (0.83, 1.0),
        "beta_vae_score": (0.0, 0.35),
        "factor_vae_score": (0.0, 0.35),
    }
    for key, (low, high) in expected.items():
        assert low <= results[key] <= high, f"{key} = {results[key]}, expected in [{low}, {high}]"


def test_codes_that_ignore_the_factors_score_mig_near_zero_through_evaluate_run(
    tmp_path, monkeypatch
):
    results = evaluation.evaluate_run(factor_run(tmp_path, monkeypatch, None), jax.random.key(0))
    assert results["mig"] < 0.1, results["mig"]
    assert results["factor_vae_score"] < 0.4, results["factor_vae_score"]


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


@pytest.mark.parametrize("points", [1, 0, -5])
def test_factor_score_points_below_two_fail_naming_the_key(points):
    # One training point leaves no evaluation point (there are half as many).
    config = config_lib.apply_overrides(
        shapes.get_config("tiny"), {"eval.factor_score_points": points}
    )
    with pytest.raises(config_lib.ConfigError, match="eval.factor_score_points"):
        config_lib.validate(config)


@pytest.mark.slow
def test_analysis_of_a_test_split_of_one_five_or_fifteen_images_writes_what_fits(tmp_path):
    """An idx folder whose test split is cut to 1, 5 and 15 images: analyze finishes, writes
    eval.json over those images, and draws every figure that fits them (interpolations need two;
    the label probe needs two classes among as many training codes)."""
    from test_idx import idx_bytes, write_idx_folder

    from experiments import mnist
    from vae_jax.data import idx

    folder = tmp_path / "data"
    images, labels = write_idx_folder(folder, gzipped=False)["test"]
    config = mnist.get_config("tiny")
    config.dataset.update(name="fashion_mnist", path=str(folder))
    workdir = tmp_path / "run"
    train.train_and_evaluate(config, workdir)
    for size in (1, 5, 15):
        for stem, array in zip(idx.FILES["test"], (images[:size], labels[:size])):
            (folder / stem).write_bytes(idx_bytes(array))
        shutil.rmtree(workdir / "figures")
        results = evaluation.analyze(workdir)
        saved = json.loads((workdir / "eval.json").read_text())
        assert saved["num_examples"] == size and saved["iwae_examples"] == min(size, 8)
        assert np.isfinite(saved["elbo"]) and np.isfinite(saved["iwae_nll"])
        assert saved["iwae_nll"] == pytest.approx(results["iwae_nll"])
        drawn = {path.stem for path in (workdir / "figures").glob("*.png")}
        expected = {"reconstructions", "samples_t0.7", "samples_t1", "traversals"}
        assert expected | ({"interpolations"} if size >= 2 else set()) == drawn, size
        with Image.open(workdir / "figures" / "reconstructions.png") as image:
            assert image.size[0] > 100


@pytest.mark.slow
@pytest.mark.parametrize("examples", [1, 5])
def test_analysis_of_a_few_factor_coded_examples_finishes(tiny_run, examples):
    """Factor metrics of 1 or 5 test codes and scores of 2 fixed-factor points: what cannot be
    estimated from so few is left out, the rest is written."""
    few = {
        "eval.analysis_examples": examples,
        "eval.iwae_examples": examples,
        "eval.factor_score_points": 2,
    }
    results = evaluation.analyze(tiny_run, eval_overrides=few)
    assert results["num_examples"] == examples and np.isfinite(results["elbo"])
    assert 0 <= results["beta_vae_score"] <= 1 and 0 <= results["factor_vae_score"] <= 1


@pytest.mark.parametrize(
    ("experiment", "overrides", "expected"),
    [
        ("shapes", {}, 0),  # Bernoulli pixels
        ("mnist", {"model.likelihood": "gaussian"}, 0),  # one channel
        ("celeba", {}, 500),  # three channels on the CPU
        ("shapes", {"eval.fid_samples": 64}, 64),  # asked for
    ],
)
def test_unset_fid_samples_leave_fid_out_for_binary_or_grey_data_and_fit_the_cpu(
    experiment, overrides, expected
):
    config = importlib.import_module(f"experiments.{experiment}").get_config()
    if experiment == "mnist":
        overrides = {**overrides, "dataset.channels": 1}
    config = config_lib.apply_overrides(config, overrides)
    assert evaluation.with_fid_samples(config).eval.fid_samples == expected
