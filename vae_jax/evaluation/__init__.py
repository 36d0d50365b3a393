"""Evaluation of a trained run, as `--mode=analyze` does it: `evaluate_run` (numbers) and
`analyze` (numbers into eval.json, figures into figures/ and TensorBoard).

    likelihood.py       ELBO on batches (shared with training's periodic evaluation), IWAE,
                        per-dimension KL, active units
    disentanglement.py  MIG, DCI, SAP, modularity, explicitness, BetaVAE and FactorVAE scores
                        (datasets with ground-truth factors)
    probes.py           linear probes of labels from the codes (CelebA attributes)
    sample_quality.py   FID and KID of samples and reconstructions (Inception: vae_jax.fid)

All numbers are per example, in nats unless named bits_per_dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import ml_collections
import numpy as np
from absl import logging

from vae_jax import config as config_lib
from vae_jax import data, figures, parallel, report, writers
from vae_jax import objectives as O
from vae_jax.evaluation import disentanglement, likelihood, probes
from vae_jax.models.heads import EIGHT_BIT_LIKELIHOODS
from vae_jax.progress import Progress

if TYPE_CHECKING:
    from vae_jax.run import Run

__all__ = ["analyze", "evaluate_run", "format_table"]


# eval.fid_samples when unset, on CPU and on accelerators. The Inception network runs about 4.5
# images/s on 2 CPU cores (README, FID): 500 samples, their test images and reconstructions take
# about 6 minutes there; the 10,000 of the common protocol take over 2 hours.
FID_SAMPLES_CPU = 500
FID_SAMPLES_ACCELERATOR = 10_000


def with_fid_samples(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config`, or when eval.fid_samples is unset a copy with it set: 0 (no FID or KID) for
    Bernoulli pixels, whose E[x|z] images are grey levels scored against binary images, and for
    one-channel data (an ImageNet network's features of grey digits); else FID_SAMPLES_CPU on
    CPU and FID_SAMPLES_ACCELERATOR on a GPU or TPU. Logs the choice."""
    if config.eval.fid_samples is not None:
        return config
    backend = jax.default_backend()
    if config.model.likelihood == "bernoulli" or config.dataset.channels == 1:
        samples, why = 0, "FID and KID left out for binary or one-channel data"
    elif backend == "cpu":
        samples, why = FID_SAMPLES_CPU, "FID and KID at a size that takes minutes on CPU"
    else:
        samples, why = FID_SAMPLES_ACCELERATOR, f"FID and KID on {backend}"
    logging.info(
        "eval.fid_samples unset: %d (%s); set --config.eval.fid_samples=N to choose",
        samples,
        why,
    )
    return config_lib.apply_overrides(config, {"eval.fid_samples": samples})


# The code-based factor metrics fit predictors on half the codes and score the other half;
# below this many codes a factor often takes one value in a half.
MIN_FACTOR_METRIC_CODES = 10


def evaluate_run(run: Run, key: jax.Array) -> dict:
    """The evaluation suite on the run's test split, as a JSON-ready dict.

    Sizes come from run.config.eval: analysis_examples (ELBO, active units, disentanglement,
    probes; None: the whole split), iwae_examples and iwae_samples (IWAE), iwae_chunk (samples
    per decoder call), factor_score_points (BetaVAE and FactorVAE scores), factor_metric_points
    (MIG, DCI, SAP, modularity, explicitness of rendered codes; None: of the test codes),
    fid_samples and fid_temperatures (FID and KID; 0 samples: none), batch_size; the metrics'
    classifiers from dci_predictor and logistic_solver.
    """
    run.config = with_fid_samples(run.config)
    cfg = run.config.eval
    mesh = parallel.make_mesh()
    parallel.check_divisible("eval.batch_size", cfg.batch_size, mesh)
    elbo_fn = likelihood.make_elbo_fn(run.model, mesh)
    elbo_key, iwae_key, fid_key = jax.random.split(key, 3)

    def per_example(split: str, num_examples: int | None) -> dict[str, np.ndarray]:
        batches = run.dataset(split, num_examples)
        progress = Progress(f"ELBO and codes of the {split} split", batches.num_examples)
        return likelihood.elbo_per_example(
            elbo_fn, run.params, progress.over_batches(batches), elbo_key, mesh, cfg.batch_size
        )

    test = per_example("test", cfg.analysis_examples)
    results = {"step": run.step, "ema": run.ema, "num_examples": len(test["elbo"])}
    for name in ("elbo", "rate", "distortion"):
        results.update(report.mean_with_error(name, test[name]))
    if "rate_groups" in test:
        results.update(likelihood.group_rate_metrics(test["rate_groups"]))
        results["group_sizes"] = list(run.group_sizes)

    images = np.concatenate([b["image"] for b in run.dataset("test", cfg.iwae_examples)])
    nll = likelihood.iwae_nll(
        run.model, run.params, images, iwae_key, cfg.iwae_samples, cfg.iwae_chunk
    )
    results.update(report.mean_with_error("iwae_nll", nll))
    results.update(
        iwae_samples=cfg.iwae_samples,
        iwae_examples=len(nll),
        # −ELBO of the same examples, for the gap to the IWAE bound
        iwae_examples_neg_elbo=float(-test["elbo"][: len(nll)].mean()),
    )
    if run.config.model.likelihood in EIGHT_BIT_LIKELIHOODS:
        bits = O.bits_per_dim(nll, run.image_shape)
        results.update(report.mean_with_error("bits_per_dim", bits))
        elbo_bits = O.bits_per_dim(-test["elbo"], run.image_shape)
        results.update(report.mean_with_error("elbo_bits_per_dim", elbo_bits))

    if cfg.fid_samples:
        from vae_jax.evaluation import sample_quality  # see analyze

        results.update(sample_quality.sample_quality(run, fid_key))

    if "mean" not in test:  # hierarchical: no single code vector for the code-based metrics
        return results
    codes = test["mean"]
    num_active, variances = likelihood.active_units(codes)
    results.update(
        kl_per_dim=test["kl_per_dim"].mean(0).tolist(),
        active_units=num_active,
        active_unit_variances=variances.tolist(),
    )
    factor_sizes = data.factor_sizes(run.config.dataset)
    if "factors" in test and factor_sizes is not None and cfg.factor_metric_points is not None:
        results.update(_rendered_factor_metrics(run, factor_sizes))
    elif "factors" in test and len(codes) < MIN_FACTOR_METRIC_CODES:
        logging.info(
            "No MIG, DCI, SAP, modularity or explicitness: %d test codes (they need %d)",
            len(codes),
            MIN_FACTOR_METRIC_CODES,
        )
    elif "factors" in test:
        results.update(
            disentanglement.factor_metrics(
                codes,
                test["factors"],
                dci_predictor=cfg.dci_predictor,
                logistic_solver=cfg.logistic_solver,
            )
        )
    if factor_sizes is not None:
        results.update(_fixed_factor_scores(run, factor_sizes))
    probed = [name for name in ("attributes", "label") if name in test]
    if probed:
        # Fitted on as many training examples as there are test codes.
        train = per_example("train", len(codes))
        if "attributes" in test:
            results.update(
                probes.attribute_metrics(
                    train["mean"], train["attributes"], codes, test["attributes"]
                )
            )
        if "label" in test:
            results.update(
                probes.label_metrics(train["mean"], train["label"], codes, test["label"])
            )
    return results


def factor_encoder(run: Run, progress: Progress) -> disentanglement.Representation:
    """Factor indices [N, F] -> posterior means [N, k] of the images with those factors,
    rendered and encoded eval.batch_size at a time, each call advancing `progress`."""
    batch_size = run.config.eval.batch_size

    def encode(factors: np.ndarray) -> np.ndarray:
        means = [
            run.encode(
                data.images_for_factors(run.config.dataset, factors[i : i + batch_size])
            ).mean
            for i in range(0, len(factors), batch_size)
        ]
        # Read back only now: encoding runs asynchronously while the next batch renders.
        codes = np.concatenate([np.asarray(m) for m in means])
        progress.advance(len(codes))
        return codes

    return encode


def _rendered_factor_metrics(run: Run, factor_sizes: Sequence[int]) -> dict:
    """MIG, DCI, SAP, modularity and explicitness as disentanglement_lib runs them: fitted on
    the codes of eval.factor_metric_points freshly rendered observations (MIG and modularity of
    these alone) and scored on half as many more, factors drawn from
    disentanglement.FACTOR_SCORE_SEED; eval.dci_predictor and eval.logistic_solver."""
    cfg = run.config.eval
    points = cfg.factor_metric_points
    progress = Progress("Codes for MIG, DCI, SAP, ..., rendered and encoded", points + points // 2)
    scores = disentanglement.rendered_factor_metrics(
        factor_encoder(run, progress),
        factor_sizes,
        np.random.default_rng(disentanglement.FACTOR_SCORE_SEED),
        points,
        dci_predictor=cfg.dci_predictor,
        logistic_solver=cfg.logistic_solver,
    )
    return {**scores, "factor_metric_points": points}


def _fixed_factor_scores(run: Run, factor_sizes: Sequence[int]) -> dict:
    """The BetaVAE and FactorVAE scores of the run's encoder on freshly rendered observations:
    eval.factor_score_points training points (None: disentanglement_lib's), half as many
    evaluation points, factors drawn from disentanglement.FACTOR_SCORE_SEED."""
    points = run.config.eval.factor_score_points or disentanglement.TRAIN_POINTS
    # 289 images per training point: a long step on CPU (README, Analysis).
    images = points + (points + points // 2) * 3 * disentanglement.POINT_BATCH
    progress = Progress("BetaVAE and FactorVAE scores, rendered and encoded", images)
    encode = factor_encoder(run, progress)
    seed = disentanglement.FACTOR_SCORE_SEED
    return {
        "beta_vae_score": disentanglement.beta_vae_score(
            encode,
            factor_sizes,
            np.random.default_rng(seed),
            points,
            points // 2,
            solver=run.config.eval.logistic_solver,
        ),
        "factor_vae_score": disentanglement.factor_vae_score(
            encode, factor_sizes, np.random.default_rng(seed), points, points // 2, points
        ),
        "factor_score_points": points,
    }


TRAVERSAL_VALUES = np.linspace(-3.0, 3.0, 7)
MAX_TRAVERSAL_ROWS = 10
FIGURE_COLUMNS = 8


def traversal_figure(run: Run, results: dict, image: np.ndarray) -> tuple:
    """Traversals of the active dimensions with the most KL (all dimensions by KL when none
    is active) of one image [H, W, C], as an analysis_figures entry."""
    kl = np.asarray(results["kl_per_dim"])
    active = np.asarray(results["active_unit_variances"]) > likelihood.ACTIVE_UNIT_THRESHOLD
    by_kl = [int(d) for d in np.argsort(-kl) if active[d]] or [int(d) for d in np.argsort(-kl)]
    dims = by_kl[:MAX_TRAVERSAL_ROWS]
    return (
        np.asarray(run.traverse(image, dims, TRAVERSAL_VALUES)),
        f"Latent traversals of one test image (active dimensions by KL): E[x] under p(x|z), "
        f"step {run.step}",
        [f"z{d}  KL {kl[d]:.2f}" for d in dims],
        [f"{v:+g}" for v in TRAVERSAL_VALUES],
    )


def analysis_figures(run: Run, results: dict, key: jax.Array) -> dict[str, tuple]:
    """Figure name -> (images [R, C, H, W, ch], title, row labels, column labels)."""
    images = np.concatenate([b["image"] for b in run.dataset("test", 2 * FIGURE_COLUMNS)])
    inputs = images[:FIGURE_COLUMNS]
    figures_ = {
        "reconstructions": (
            np.stack([inputs, np.asarray(run.reconstruct(inputs))]),
            f"Reconstructions at step {run.step}: E[x] under p(x|z) at the posterior mean",
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
            f"Samples: E[x] under p(x|z), z ~ N(0, {temperature:g}² I), step {run.step}",
            None,
            None,
        )
    if "kl_per_dim" in results:
        figures_["traversals"] = traversal_figure(run, results, inputs[0])
    num_groups = len(run.group_sizes)
    if num_groups > 1:
        kept = sorted({int(k) for k in np.linspace(0, num_groups, min(num_groups + 1, 7))})
        rows = [inputs] + [
            np.asarray(run.reconstruct(inputs, k, jax.random.fold_in(key, k))) for k in kept
        ]
        figures_["group_reconstructions"] = (
            np.stack(rows),
            f"Top k of {num_groups} groups at the posterior mean, the rest from the prior, "
            f"step {run.step}",
            ["test input"] + [f"top {k}" for k in kept],
            None,
        )
    # Up to 4 pairs, each image of the first half of the inputs with its partner in the second.
    half = min(FIGURE_COLUMNS, len(images) // 2)
    if half == 0:
        logging.info("No interpolations: the test split has %d image(s)", len(images))
        return figures_
    pairs = [
        np.asarray(run.interpolate(images[i], images[half + i], FIGURE_COLUMNS))
        for i in range(min(4, half))
    ]
    figures_["interpolations"] = (
        np.stack(pairs),
        f"Interpolations between posterior means of test images, step {run.step}",
        None,
        None,
    )
    return figures_


def analyze(
    workdir: str | Path, step: int | None = None, eval_overrides: dict | None = None
) -> dict:
    """Evaluates the run in `workdir` and writes <workdir>/eval.json (an earlier one is kept
    aside) and figures/*.png (also logged to TensorBoard). `eval_overrides`
    ({"eval.iwae_samples": 100, ...}) change the evaluation settings of the run's config.
    Returns the evaluation dict."""
    from vae_jax.run import load_run  # run.py uses likelihood.py: import it after this package

    workdir = Path(workdir)
    run = load_run(workdir, step)
    overrides = dict(eval_overrides or {})
    for key in overrides:
        if not key.startswith("eval."):
            raise config_lib.ConfigError(
                f"--config.{key}: only eval.* settings apply to --mode=analyze"
            )
    run.config = with_fid_samples(config_lib.apply_overrides(run.config, overrides))
    config_lib.validate(run.config)
    if run.config.eval.fid_samples:
        # Imported here: `import vae_jax` loads this package (through run.py), and a vae_jax.fid
        # already loaded would run twice under `python -m vae_jax.fid fetch`.
        from vae_jax import fid

        fid.check_weights()  # before any work
    key = jax.random.key(run.config.seed)
    results = evaluate_run(run, key)
    writers.write_evaluation(workdir, results)
    writer = writers.MetricsWriter(workdir)
    for name, (images, title, rows, columns) in analysis_figures(run, results, key).items():
        figures.labelled_grid_png(images, workdir / "figures" / f"{name}.png", title, rows, columns)
        flat = images.reshape((-1,) + images.shape[2:])
        writer.write_images(
            run.step, {f"analysis/{name}": figures.image_grid(flat, images.shape[1])}
        )
    groups = len(run.group_sizes)
    if groups > 1:
        figures.group_rate_plot(
            [results[f"rate_group_{g}"] for g in range(groups)],
            [results[f"rate_group_{g}_se"] for g in range(groups)],
            list(run.group_sizes),
            workdir / "figures" / "group_rates.png",
            f"Rate per latent group on the test split, step {run.step}",
        )
    writer.close()
    return results


TABLE_KEYS = (  # metric names (report.METRICS)
    "elbo",
    "rate",
    "distortion",
    "iwae_nll",
    "bits_per_dim",
    "fid_t",  # every temperature
    "kid_t",
    "fid_reconstructions",
    "kid_reconstructions",
    "active_units",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "sap_score",
    "modularity",
    "explicitness",
    "beta_vae_score",
    "factor_vae_score",
    "attribute_probe_accuracy",
    "label_probe_accuracy",
)


def format_table(results: dict) -> str:
    """The headline numbers of an evaluation as a text table: label, value, eval.json key."""
    rows = []
    shown = [k for k in results if report.metric_name(k) in TABLE_KEYS]
    for key in report.in_table_order(shown):
        value = report.format_metric(key, results[key])
        if f"{key}_se" in results:
            value += f" ± {report.format_metric(key, results[f'{key}_se'])}"
        elif f"{key}_sd" in results:  # KID: over subsets
            value += f" ± {report.format_metric(key, results[f'{key}_sd'])} s.d."
        rows.append((report.header(key), value, key))
    label_width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [f"  {lab:<{label_width}}  {value:>{value_width}}  {key}" for lab, value, key in rows]
    if "fid_protocol" in results:
        lines.append(f"  FID and KID: {results['fid_protocol']}")
    return "\n".join(lines)
