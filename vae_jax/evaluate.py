"""Evaluation of a trained run: test ELBO, IWAE log-likelihood bound, bits/dim, per-dimension KL,
active units, disentanglement (datasets with factors) and attribute probes (CelebA).

All numbers are per example, in nats unless named bits_per_dim.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from sklearn.linear_model import LogisticRegression

from vae_jax import checkpoints, data, disentanglement, figures
from vae_jax import config as config_lib
from vae_jax import distributions as D
from vae_jax import objectives as O
from vae_jax.metrics import MetricsWriter
from vae_jax.models import VAE
from vae_jax.run import Run, load_run

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E_q[z_i]) above this is active
IWAE_IMAGES_PER_CALL = 2048  # importance samples x images per decoder call


def make_log_weights_fn(model: VAE) -> Callable:
    """Jitted log_weights(params, x, key, num_samples) -> [S, B]:
    log p(x|z_s) + log p(z_s) − log q(z_s|x) for z_s ~ q(z|x), x: [B, H, W, C]."""

    def log_weights(params, x, key, num_samples: int):
        posterior = model.apply(params, x, method=VAE.encode)
        z = posterior.sample(key, (num_samples,))  # [S, B, k]
        likelihood = model.apply(params, z, method=VAE.decode)
        return likelihood.log_prob(x) + model.prior.log_prob(z) - posterior.log_prob(z)

    return jax.jit(log_weights, static_argnums=3)


def iwae_bound_chunked(
    log_weights_fn: Callable, params, x, key: jax.Array, num_samples: int, chunk_size: int
) -> np.ndarray:
    """IWAE bound log (1/K) Σₖ wₖ over K = num_samples importance samples, drawn chunk_size at a
    time (memory stays bounded) and combined with a running logsumexp: [B]."""
    total = None
    for start in range(0, num_samples, chunk_size):
        size = min(chunk_size, num_samples - start)
        chunk = log_weights_fn(params, x, jax.random.fold_in(key, start), size)
        chunk_total = jax.nn.logsumexp(chunk, axis=0)
        total = chunk_total if total is None else jnp.logaddexp(total, chunk_total)
    return np.asarray(total) - math.log(num_samples)


def make_elbo_fn(model: VAE) -> Callable:
    """Jitted elbo(params, x, key) -> (ElboTerms [B], posterior means [B, k], KL per dim [B, k])."""

    def elbo(params, x, key):
        out = model.apply(params, x, key)
        terms = O.elbo_terms(out.posterior, model.prior, out.likelihood, x)
        return terms, out.posterior.mean, marginal_kl_per_dimension(out.posterior)

    return jax.jit(elbo)


def marginal_kl_per_dimension(posterior: D.Gaussian) -> jax.Array:
    """KL(q(z_i|x) || N(0, 1)) of each marginal: [..., k]. For a diagonal posterior these sum to
    the KL; for a full one they ignore the correlations (they sum to at most the KL)."""
    if isinstance(posterior, D.DiagGaussian):
        marginal = posterior
    else:
        variance = jnp.diagonal(posterior.covariance(), axis1=-2, axis2=-1)
        marginal = D.DiagGaussian(posterior.mean, jnp.log(variance))
    return D.kl_per_dimension(marginal, D.standard_normal(posterior.mean.shape[-1]))


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD):
    """Burda et al. (2016): dimension i is active when Var_x(E_q[z_i|x]) > threshold.

    means: [N, k] posterior means. Returns (number active, variances [k])."""
    variances = np.var(np.asarray(means, np.float64), axis=0)
    return int(np.sum(variances > threshold)), variances


def attribute_probe_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
) -> np.ndarray:
    """Test accuracy [A] of one logistic regression per binary attribute on mean codes [N, k]."""
    scale = train_codes.std(0) + 1e-8
    accuracies = []
    for a in range(train_labels.shape[1]):
        if len(np.unique(train_labels[:, a])) < 2:
            accuracies.append(float(np.mean(test_labels[:, a] == train_labels[0, a])))
            continue
        probe = LogisticRegression(max_iter=500).fit(train_codes / scale, train_labels[:, a])
        accuracies.append(probe.score(test_codes / scale, test_labels[:, a]))
    return np.asarray(accuracies)


def _encode_with_labels(run: Run, batches: Iterable[data.Batch], key: str):
    """Posterior means [N, k] and the stacked labels `key` [N, ...] over `batches`."""
    means, labels = [], []
    for batch in batches:
        means.append(np.asarray(run.encode(batch["image"]).mean))
        labels.append(batch[key])
    return np.concatenate(means), np.concatenate(labels)


def iwae_nll(run: Run, batches: Iterable[data.Batch], key: jax.Array) -> np.ndarray:
    """−IWAE bound per example [N] with run.config.eval.iwae_samples samples, decoding about
    IWAE_IMAGES_PER_CALL images per call (larger calls are memory-bound on CPU)."""
    cfg = run.config.eval
    log_weights_fn = make_log_weights_fn(run.model)
    examples_per_call = max(1, IWAE_IMAGES_PER_CALL // cfg.iwae_chunk)
    images = np.concatenate([batch["image"] for batch in batches])
    bounds = [
        iwae_bound_chunked(
            log_weights_fn,
            run.params,
            images[start : start + examples_per_call],
            jax.random.fold_in(key, start),
            cfg.iwae_samples,
            cfg.iwae_chunk,
        )
        for start in range(0, len(images), examples_per_call)
    ]
    return -np.concatenate(bounds)


LABEL_KEYS = ("factors", "attributes")


def evaluate_run(run: Run, key: jax.Array) -> dict:
    """The evaluation suite on the run's test split, as a JSON-ready dict.

    Sizes come from run.config.eval: analysis_examples (ELBO, active units, disentanglement,
    probes; None: the whole split), iwae_examples and iwae_samples (IWAE), iwae_chunk (samples
    per decoder call).
    """
    cfg = run.config.eval
    elbo_fn = make_elbo_fn(run.model)
    elbo_key, iwae_key = jax.random.split(key)
    per_example = {"elbo": [], "rate": [], "distortion": []}
    means, kl_dims, labels = [], [], {name: [] for name in LABEL_KEYS}
    for i, batch in enumerate(run.dataset("test", cfg.analysis_examples)):
        terms, mean, kl_dim = elbo_fn(run.params, batch["image"], jax.random.fold_in(elbo_key, i))
        for name, values in per_example.items():
            values.append(np.asarray(getattr(terms, name)))
        means.append(np.asarray(mean))
        kl_dims.append(np.asarray(kl_dim))
        for name in LABEL_KEYS:
            if name in batch:
                labels[name].append(batch[name])
    codes = np.concatenate(means)
    results = {"step": run.step, "num_examples": len(codes)}
    per_example = {name: np.concatenate(values) for name, values in per_example.items()}
    results.update({name: float(values.mean()) for name, values in per_example.items()})

    nll = iwae_nll(run, run.dataset("test", cfg.iwae_examples), iwae_key)
    results.update(
        iwae_nll=float(nll.mean()),
        iwae_samples=cfg.iwae_samples,
        iwae_examples=len(nll),
        # −ELBO of the same examples, for the gap to the IWAE bound
        iwae_examples_neg_elbo=float(-per_example["elbo"][: len(nll)].mean()),
    )
    if run.config.model.likelihood == "discretized_logistic":
        results["bits_per_dim"] = O.bits_per_dim(results["iwae_nll"], run.image_shape)
        results["elbo_bits_per_dim"] = O.bits_per_dim(-results["elbo"], run.image_shape)

    num_active, variances = active_units(codes)
    results.update(
        kl_per_dim=np.concatenate(kl_dims).mean(0).tolist(),
        active_units=num_active,
        active_unit_variances=variances.tolist(),
    )
    if labels["factors"]:
        results.update(factor_metrics(codes, np.concatenate(labels["factors"])))
    if labels["attributes"]:
        results.update(probe_metrics(run, codes, np.concatenate(labels["attributes"])))
    return results


def factor_metrics(codes: np.ndarray, factors: np.ndarray) -> dict:
    """MIG and DCI of mean codes [N, k] against ground-truth factor indices [N, F]; DCI's
    predictors are fitted on the first half of the examples and scored on the second."""
    half = len(codes) // 2
    dci = disentanglement.dci(codes[:half], factors[:half], codes[half:], factors[half:])
    return {
        "mig": disentanglement.mig(codes, factors),
        "mig_per_factor": disentanglement.mig_per_factor(codes, factors).tolist(),
        **{f"dci_{name}": value for name, value in dci.items()},
    }


def probe_metrics(run: Run, test_codes: np.ndarray, test_attributes: np.ndarray) -> dict:
    """Linear-probe accuracy of binary attributes from mean codes: fitted on as many training
    examples as there are test codes, scored on the test codes [N, k] / attributes [N, A]."""
    train_codes, train_attributes = _encode_with_labels(
        run, run.dataset("train", len(test_codes)), "attributes"
    )
    accuracy = attribute_probe_accuracy(train_codes, train_attributes, test_codes, test_attributes)
    majority = np.maximum(test_attributes.mean(0), 1 - test_attributes.mean(0))
    return {
        "attribute_probe_accuracy": float(accuracy.mean()),
        "attribute_probe_accuracy_per_attribute": accuracy.tolist(),
        "attribute_majority_baseline": float(majority.mean()),
    }


TRAVERSAL_VALUES = np.linspace(-3.0, 3.0, 7)
MAX_TRAVERSAL_ROWS = 10
FIGURE_COLUMNS = 8


def analysis_figures(run: Run, results: dict, key: jax.Array) -> dict[str, tuple]:
    """Figure name -> (images [R, C, H, W, ch], title, row labels, column labels)."""
    images = np.concatenate([b["image"] for b in run.dataset("test", 2 * FIGURE_COLUMNS)])
    inputs = images[:FIGURE_COLUMNS]
    figures_ = {
        "reconstructions": (
            np.stack([inputs, np.asarray(run.reconstruct(inputs))]),
            f"Reconstructions at step {run.step} (decoded posterior means)",
            ["test input", "reconstruction"],
            None,
        )
    }
    for temperature in (0.7, 1.0):
        samples = np.asarray(
            run.sample(jax.random.fold_in(key, 0), 4 * FIGURE_COLUMNS, temperature)
        )
        figures_[f"samples_t{temperature:g}"] = (
            samples.reshape((4, FIGURE_COLUMNS) + samples.shape[1:]),
            f"Samples, z ~ N(0, {temperature:g}² I), step {run.step}",
            None,
            None,
        )
    kl = np.asarray(results["kl_per_dim"])
    active = np.asarray(results["active_unit_variances"]) > ACTIVE_UNIT_THRESHOLD
    by_kl = [int(d) for d in np.argsort(-kl) if active[d]] or [int(d) for d in np.argsort(-kl)]
    dims = by_kl[:MAX_TRAVERSAL_ROWS]
    figures_["traversals"] = (
        np.asarray(run.traverse(inputs[0], dims, TRAVERSAL_VALUES)),
        f"Latent traversals of one test image (active dimensions by KL), step {run.step}",
        [f"z{d}  KL {kl[d]:.2f}" for d in dims],
        [f"{v:+g}" for v in TRAVERSAL_VALUES],
    )
    pairs = [
        np.asarray(run.interpolate(images[i], images[FIGURE_COLUMNS + i], FIGURE_COLUMNS))
        for i in range(4)
    ]
    figures_["interpolations"] = (
        np.stack(pairs),
        f"Interpolations between posterior means of test images, step {run.step}",
        None,
        None,
    )
    return figures_


def _keep_previous_eval(path: Path) -> None:
    """Moves an existing eval.json aside as eval_step_<N>[_<i>].json: nothing is overwritten."""
    if not path.is_file():
        return
    step = json.loads(path.read_text()).get("step", "unknown")
    kept = path.with_name(f"eval_step_{step}.json")
    attempt = 1
    while kept.exists():
        kept, attempt = path.with_name(f"eval_step_{step}_{attempt}.json"), attempt + 1
    path.rename(kept)
    logging.info("Kept the previous evaluation (step %s) as %s", step, kept)


def analyze(
    workdir: str | Path, step: int | None = None, eval_overrides: dict | None = None
) -> dict:
    """Evaluates the run in `workdir` and writes <workdir>/eval.json and figures/*.png (also
    logged to TensorBoard). `eval_overrides` ({"eval.iwae_samples": 100, ...}) change the
    evaluation settings of the run's config. Returns the evaluation dict."""
    workdir = Path(workdir)
    run = load_run(workdir, step)
    for key, value in (eval_overrides or {}).items():
        section, _, name = key.partition(".")
        if section != "eval":
            raise ValueError(f"--config.{key}: only eval.* settings apply to --mode=analyze")
        run.config.eval[name] = value
    config_lib.validate(run.config)
    key = jax.random.key(run.config.seed)
    results = evaluate_run(run, key)
    path = workdir / checkpoints.EVAL_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    _keep_previous_eval(path)
    temporary.rename(path)
    writer = MetricsWriter(workdir)
    for name, (images, title, rows, columns) in analysis_figures(run, results, key).items():
        figures.labelled_grid_png(images, workdir / "figures" / f"{name}.png", title, rows, columns)
        flat = images.reshape((-1,) + images.shape[2:])
        writer.write_images(
            run.step, {f"analysis/{name}": figures.image_grid(flat, images.shape[1])}
        )
    writer.close()
    return results


SUMMARY_KEYS = (
    "elbo",
    "rate",
    "distortion",
    "iwae_nll",
    "bits_per_dim",
    "active_units",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "attribute_probe_accuracy",
)


def format_table(results: dict) -> str:
    """The headline numbers of an evaluation as a two-column text table."""
    rows = [(key, results[key]) for key in SUMMARY_KEYS if key in results]
    width = max(len(key) for key, _ in rows)
    return "\n".join(
        f"  {key:<{width}}  {value:.4g}"
        if isinstance(value, float)
        else f"  {key:<{width}}  {value}"
        for key, value in rows
    )
