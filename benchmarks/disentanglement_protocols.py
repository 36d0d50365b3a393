"""The fast and the disentanglement_lib settings of the disentanglement metrics, on the codes of
one trained run with ground-truth factors: each score under each setting and the seconds its fit
took.

    python launch.py --config=experiments/shapes.py --workdir=/tmp/shapes_metrics   # train
    python benchmarks/disentanglement_protocols.py --workdir=/tmp/shapes_metrics

On the same 10,000 training and 5,000 test codes of freshly rendered images of uniformly drawn
factors (the library's sizes), DCI is fitted with each eval.dci_predictor and explicitness with
each eval.logistic_solver; the BetaVAE score's regression with each solver on the same
--beta_vae_points features. Then both whole protocols as --mode=analyze runs them: the default
experiment's (the test split's codes, half fitted and half scored, extra trees) and :study's
(rendered codes, gradient boosting). Prints one JSON object.
"""

import json
import time

import numpy as np
from absl import app, flags

from vae_jax import data, evaluation, load_run
from vae_jax.evaluation import disentanglement as dis
from vae_jax.progress import Progress

flags.DEFINE_string("workdir", "/tmp/shapes_metrics", "A finished run on shapes, dsprites, ...")
flags.DEFINE_integer("num_train", dis.TRAIN_POINTS, "Training codes (the library's 10,000).")
flags.DEFINE_integer("beta_vae_points", 1_000, "BetaVAE training points (half as many scored).")
FLAGS = flags.FLAGS


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, round(time.perf_counter() - start, 2)


def main(argv):
    del argv
    run = load_run(FLAGS.workdir)
    sizes = data.factor_sizes(run.config.dataset)
    n = FLAGS.num_train
    represent = evaluation.factor_encoder(run, Progress("rendered codes", n + n // 2))
    rng = np.random.default_rng(dis.FACTOR_SCORE_SEED)
    (codes, factors), encode_seconds = timed(dis.sample_codes, represent, sizes, rng, n + n // 2)
    train, test = (codes[:n], factors[:n]), (codes[n:], factors[n:])

    values, seconds = {}, {}
    for predictor in dis.DCI_PREDICTORS:
        scores, seconds[f"dci/{predictor}"] = timed(dis.dci, *train, *test, predictor)
        for name, value in scores.items():
            values.setdefault(f"dci_{name}", {})[predictor] = value
    for solver in dis.LOGISTIC_SOLVERS:
        value, seconds[f"explicitness/{solver}"] = timed(dis.explicitness, *train, *test, solver)
        values.setdefault("explicitness", {})[solver] = value
    values["sap_score"], seconds["sap_score"] = timed(dis.sap_score, *train, *test)
    values["mig"], seconds["mig"] = timed(dis.mig, *train)

    points = FLAGS.beta_vae_points
    rng = np.random.default_rng(dis.FACTOR_SCORE_SEED)
    features, labels = dis.beta_vae_points(represent, sizes, rng, points + points // 2)
    for solver in dis.LOGISTIC_SOLVERS:
        classifier, seconds[f"beta_vae_score/{solver}"] = timed(
            dis.logistic_regression(solver).fit, features[:points], labels[:points]
        )
        values.setdefault("beta_vae_score", {})[solver] = float(
            classifier.score(features[points:], labels[points:])
        )

    # The two protocols whole, as evaluate_run computes them.
    batches = list(run.dataset("test", run.config.eval.analysis_examples))
    test_codes = np.concatenate([np.asarray(run.encode(b["image"]).mean) for b in batches])
    test_factors = np.concatenate([b["factors"] for b in batches])
    default, default_seconds = timed(
        dis.factor_metrics, test_codes, test_factors, dci_predictor="extra_trees"
    )
    study, study_seconds = timed(
        dis.factor_metrics,
        codes,
        factors,
        n,
        dci_predictor="gradient_boosting",
        logistic_solver="liblinear",
    )
    protocols = {
        "default (test split halves, extra_trees)": {
            "codes": [len(test_codes) // 2, len(test_codes) - len(test_codes) // 2],
            "seconds": default_seconds,
            **{k: v for k, v in default.items() if k != "mig_per_factor"},
        },
        "study (rendered, gradient_boosting)": {
            "codes": [n, n // 2],
            "seconds": study_seconds,
            **{k: v for k, v in study.items() if k != "mig_per_factor"},
        },
    }
    print(
        json.dumps(
            {
                "benchmark": "disentanglement_protocols",
                "workdir": FLAGS.workdir,
                "step": run.step,
                "codes": {"train": n, "test": n // 2, "render_encode_seconds": encode_seconds},
                "beta_vae_points": [points, points // 2],
                "values": values,
                "seconds": seconds,
                "protocols": protocols,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    app.run(main)
