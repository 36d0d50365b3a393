"""Disentanglement metrics from latent codes and ground-truth factors.

Most take numpy arrays, codes [N, k] float (posterior means, say) and factors [N, F] int
indices (e.g. `shapes.factor_indices`); outputs are floats, informations in nats.

    MIG           Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"
    DCI           Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of
                  Disentangled Representations"
    SAP           Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts
                  from Unlabeled Observations"
    modularity,   Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings With the
    explicitness  F-Statistic Loss"

The BetaVAE score (Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework") and the FactorVAE score (Kim & Mnih 2018, "Disentangling by
Factorising") need batches of observations that share one factor, so they take a
representation instead: a function from factor indices [N, F] to codes [N, k] (render the
images, encode them), and draw the factors themselves, uniformly.

Every score computes disentanglement_lib's formula (Locatello et al. 2019,
google-research/disentanglement_lib). Its study's protocol (the unsupervised_study_v1 metric
configs) is what the `:study` experiment variant evaluates with:

    MIG, modularity        10,000 codes of uniformly drawn factors (20 equal-width bins)
    DCI                    GradientBoostingClassifier() per factor, fitted on 10,000 codes,
                           informativeness = mean accuracy on 5,000 more
    SAP                    LinearSVC(C=0.01, balanced) per code and factor, 10,000 / 5,000
    explicitness           LogisticRegression() on standardised codes, 10,000 / 5,000
    BetaVAE score          LogisticRegression() on 10,000 / 5,000 points of 64 pairs
    FactorVAE score        variances of 10,000 codes; 10,000 / 5,000 votes of batches of 64

where LogisticRegression() was, in the scikit-learn the library ran on (before 0.22),
liblinear's L2 logistic regression fitted one-vs-rest, with the one-vs-rest probabilities
normalised to sum to 1: logistic_solver="liblinear" here (the default everywhere: it is also
the faster), and "lbfgs" today's multinomial default, which reads a many-valued factor from a
code linear in it better (explicitness of a perfect shapes code 0.99 rather than 0.94).
Two settings trade the library's exactness for speed; evaluate_run reads them from the config
(eval.dci_predictor, eval.factor_metric_points):

- dci_predictor="extra_trees" (the default experiments'): an ExtraTreesClassifier (50 trees,
  every code considered at each split, at least 20 examples per leaf) instead of gradient
  boosting, which fits one depth-3 tree per class per stage for 100 stages (4,000 trees for the
  40-class orientation). Its impurity importances are R.
- The codes of the test split, first half fitted and second half scored, MIG and modularity of
  all of them, instead of freshly rendered 10,000 + 5,000 (eval.factor_metric_points unset).

Measured on the default shapes run (3,000 steps; benchmarks/disentanglement_protocols.py, 2
CPU cores, the same 10,000 / 5,000 rendered codes): gradient boosting D / C / I 0.081 / 0.089 /
0.420 in 306 s, extra trees 0.098 / 0.107 / 0.470 in 2 s; explicitness 0.773 (liblinear, 1 s)
against 0.787 (lbfgs, 7 s); the BetaVAE score of 1,000 / 500 points 0.722 against 0.754.

Codes are discretised as in disentanglement_lib: equal-width bins per dimension between its
min and max. MI of a code is at most log(num_bins), so with the default 20 bins a perfect code
of a factor with more values (shapes: orientation 40, pos 32) scores MI < H(factor): pass
num_bins >= the largest factor size to compare against 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from vae_jax.progress import Progress

# Fixed so that DCI of the same codes is the same number on every call.
PREDICTOR_SEED = 0
# eval.dci_predictor and eval.logistic_solver (see the module docstring); the first of each is
# disentanglement_lib's.
DCI_PREDICTORS = ("gradient_boosting", "extra_trees")
LOGISTIC_SOLVERS = ("liblinear", "lbfgs")

# The BetaVAE and FactorVAE scores: training and evaluation points (FactorVAE: votes), each
# from a batch of observations (BetaVAE: pairs of observations) that share one factor. The
# library's MIG, DCI, SAP, modularity and explicitness use as many codes (MIG and modularity
# the training codes only).
TRAIN_POINTS = 10_000
EVAL_POINTS = 5_000
POINT_BATCH = 64
# FactorVAE: codes for the global variances, and the standard deviation under which a code
# counts as collapsed and never gets a vote (disentanglement_lib prunes on sqrt(variance)).
VARIANCE_POINTS = 10_000
PRUNE_SCALE = 0.05
# SAP's per-code classifier for discrete factors: LinearSVC with this C, balanced classes.
SAP_SVC_C = 0.01
# The factors these scores draw come from this seed, not config.seed, so that every run is
# scored on the same observations.
FACTOR_SCORE_SEED = 0

# Factor indices [N, F] -> codes [N, k] of observations with those factors.
Representation = Callable[[np.ndarray], np.ndarray]


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    """H(p) = −Σ p log p in nats over the last axis, with 0 log 0 = 0.  [..., n] -> [...]"""
    logs = np.log(np.where(probabilities > 0, probabilities, 1.0))
    return -np.sum(probabilities * logs, axis=-1)


def _empirical_entropy(labels: np.ndarray) -> float:
    """H of the empirical distribution of labels [N] (any values), in nats."""
    _, counts = np.unique(labels, return_counts=True)
    return float(_entropy(counts / counts.sum()))


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) = H(a) + H(b) − H(a, b) of the empirical joint distribution of labels [N], [N]."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = a * (b.max() + 1) + b
    return _empirical_entropy(a) + _empirical_entropy(b) - _empirical_entropy(joint)


def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Codes [N, k] -> bin indices [N, k] in 0..num_bins−1.

    Per dimension, num_bins equal-width bins spanning [min, max], the last bin closed
    (np.histogram's bins, as in disentanglement_lib).
    """
    columns = []
    for column in np.asarray(codes, dtype=np.float64).T:
        edges = np.histogram_bin_edges(column, bins=num_bins)
        columns.append(np.digitize(column, edges[1:-1]))
    return np.stack(columns, axis=1)


def mutual_information_matrix(
    codes: np.ndarray, factors: np.ndarray, num_bins: int = 20
) -> np.ndarray:
    """MI_ij = I(bin(z_i); v_j) in nats, from the empirical joint histogram.

    codes [N, k] float, factors [N, F] int -> MI [k, F]. Codes are binned by `discretize`.
    """
    factors = np.asarray(factors)
    if len(codes) != len(factors):
        raise ValueError(
            f"codes has {len(codes)} rows but factors has {len(factors)}: "
            "pass one row of factors per code"
        )
    bins = discretize(codes, num_bins)
    return np.array(
        [[_mutual_information(code, factor) for factor in factors.T] for code in bins.T]
    )


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """H(v_j) of each factor's empirical distribution, in nats.  factors [N, F] -> [F]"""
    return np.array([_empirical_entropy(factor) for factor in np.asarray(factors).T])


def mig_per_factor(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Gap_j = (MI of the most informative code − MI of the second) / H(v_j).

    codes [N, k] with k >= 2, factors [N, F] -> [F]; NaN for a factor with a single value,
    whose H(v_j) = 0 leaves the gap undefined.
    """
    if np.shape(codes)[1] < 2:
        raise ValueError(
            f"MIG compares the two most informative codes but codes has "
            f"{np.shape(codes)[1]} dimension: pass codes [N, k] with k >= 2"
        )
    mi = mutual_information_matrix(codes, factors, num_bins)
    top_two = -np.sort(-mi, axis=0)[:2]
    entropies = factor_entropies(factors)
    informative = entropies > 0
    return np.where(
        informative, (top_two[0] - top_two[1]) / np.where(informative, entropies, 1.0), np.nan
    )


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """MIG = mean over factors j with H(v_j) > 0 of Gap_j (see `mig_per_factor`), in [0, 1].

    codes [N, k], factors [N, F].
    """
    gaps = mig_per_factor(codes, factors, num_bins)
    if np.all(np.isnan(gaps)):
        raise ValueError(
            "every factor takes a single value, so MIG is undefined: pass factors that vary"
        )
    return float(np.nanmean(gaps))


def dci_classifier(predictor: str):
    """A fresh, unfitted classifier of one factor from all codes, as eval.dci_predictor names it.

    gradient_boosting: disentanglement_lib's `GradientBoostingClassifier()` with its default
    settings (100 stages of depth-3 trees, learning rate 0.1), its tie-breaking seeded.
    extra_trees: 50 extremely randomised trees, every code considered at each split, at least 20
    examples per leaf; several times faster (module docstring).
    """
    # Imported here: scikit-learn takes a second to import, which training never needs.
    from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier

    if predictor == "gradient_boosting":
        return GradientBoostingClassifier(random_state=PREDICTOR_SEED)
    if predictor == "extra_trees":
        return ExtraTreesClassifier(
            n_estimators=50,
            max_features=None,
            min_samples_leaf=20,
            random_state=PREDICTOR_SEED,
            n_jobs=-1,
        )
    raise ValueError(f"dci_predictor={predictor!r} is not one of: {', '.join(DCI_PREDICTORS)}")


def logistic_regression(solver: str):
    """A fresh, unfitted L2 logistic regression (C = 1), as eval.logistic_solver names it.

    liblinear: what disentanglement_lib's `LogisticRegression()` was in the scikit-learn it ran
    on: liblinear fitted one-vs-rest (one binary regression per class, the intercept penalised
    like a weight), probabilities the per-class sigmoids normalised to sum to 1. scikit-learn
    >= 1.5 fits liblinear to two classes only, so more are wrapped in OneVsRestClassifier.
    lbfgs: today's default, one multinomial (softmax) regression.
    """
    from sklearn.linear_model import LogisticRegression  # see dci_classifier
    from sklearn.multiclass import OneVsRestClassifier

    if solver == "liblinear":
        return OneVsRestClassifier(LogisticRegression(solver="liblinear"))
    if solver == "lbfgs":
        return LogisticRegression()
    raise ValueError(f"logistic_solver={solver!r} is not one of: {', '.join(LOGISTIC_SOLVERS)}")


def importance_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    predictor: str = "extra_trees",
) -> tuple[np.ndarray, np.ndarray]:
    """Fits one `dci_classifier(predictor)` per factor, codes -> v_j, on the training split.

    codes_* [N_*, k], factors_* [N_*, F] -> (R [k, F], test accuracies [F]).
    R_ij = impurity importance of code i for predicting v_j; each column sums to 1
    (or is all zero when the trees never split).
    """
    importances, accuracies = [], []
    num_factors = np.shape(factors_train)[1]
    progress = Progress(f"DCI, {predictor} per factor", num_factors, unit="factors")
    for j in range(num_factors):
        classifier = dci_classifier(predictor).fit(codes_train, factors_train[:, j])
        importances.append(np.abs(classifier.feature_importances_))
        accuracies.append(classifier.score(codes_test, factors_test[:, j]))
        progress.advance(1)
    return np.stack(importances, axis=1), np.array(accuracies)


def _weighted_concentration(importance: np.ndarray) -> float:
    """Σ_i ρ_i (1 − H_n(P_i·)) for a nonnegative matrix [m, n].

    P_ij = R_ij / Σ_j R_ij (row i as a distribution), ρ_i = Σ_j R_ij / Σ_ij R_ij, H_n the
    entropy in base n. Rows of zero importance have ρ_i = 0 and are left out.
    """
    row_sums = importance.sum(axis=1)
    if row_sums.sum() == 0:
        return 0.0
    if importance.shape[1] == 1:
        return 1.0  # one outcome: every row is a point mass, H_1 = 0
    used = row_sums > 0
    rows = importance[used] / row_sums[used, None]
    weights = row_sums[used] / row_sums.sum()
    return float(np.sum(weights * (1.0 - _entropy(rows) / np.log(importance.shape[1]))))


def disentanglement(importance: np.ndarray) -> float:
    """D = Σ_i ρ_i (1 − H_F(P_i·)), P_ij = R_ij / Σ_j R_ij, ρ_i = Σ_j R_ij / Σ_ij R_ij.

    importance R [k, F]. D_i = 1 when code i matters for one factor only; ρ_i weighs codes by
    how much they matter at all, so uninformative codes do not count.
    """
    return _weighted_concentration(importance)


def completeness(importance: np.ndarray) -> float:
    """C = Σ_j ρ̃_j (1 − H_k(P̃_·j)), P̃_ij = R_ij / Σ_i R_ij, ρ̃_j = Σ_i R_ij / Σ_ij R_ij.

    importance R [k, F]. C_j = 1 when factor j is read from one code only. With the
    predictors' importances each column sums to 1, so ρ̃_j = 1/F: the plain mean over factors.
    """
    return _weighted_concentration(importance.T)


def _varying(factors: np.ndarray) -> list[int]:
    """Columns of factors [N, F] that take more than one value: nothing can be predicted of the
    others. Raises ValueError when there are none."""
    varying = [j for j in range(factors.shape[1]) if np.unique(factors[:, j]).size > 1]
    if not varying:
        raise ValueError("every factor takes a single value: pass factors that vary")
    return varying


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    predictor: str = "extra_trees",
) -> dict[str, float]:
    """Disentanglement, completeness and informativeness (mean test accuracy) of codes, from
    the importances of `dci_classifier(predictor)` (disentanglement_lib's: gradient_boosting).

    codes_* [N_*, k], factors_* [N_*, F]. Factors with a single value in the training split
    are left out: nothing can be predicted of them.
    """
    factors_train, factors_test = np.asarray(factors_train), np.asarray(factors_test)
    varying = _varying(factors_train)
    importance, accuracies = importance_matrix(
        codes_train, factors_train[:, varying], codes_test, factors_test[:, varying], predictor
    )
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness": float(np.mean(accuracies)),
    }


def sap_score_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> np.ndarray:
    """S_ij = test accuracy of a classifier of v_j from code i alone.

    codes_* [N_*, k], factors_* [N_*, F] (discrete) -> S [k, F]. The classifier is
    disentanglement_lib's: a one-vs-rest LinearSVC (C = SAP_SVC_C, classes weighted to balance)
    on the one code. A one-vs-rest linear rule on one number gives each class the region where
    its line is highest, so only a few of a many-valued factor's values are ever predicted:
    a code equal to the factor (unit variance) scores 1 for the 3 shapes but 0.65 for the 6
    scales and about 0.05 for the 32 positions or 40 orientations (see the tests). C = 0.01
    regularises hard, so codes of smaller scale score lower still.
    """
    from sklearn.svm import LinearSVC  # see dci_classifier

    scores = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for i in range(codes_train.shape[1]):
        for j in range(factors_train.shape[1]):
            classifier = LinearSVC(C=SAP_SVC_C, class_weight="balanced")
            classifier.fit(codes_train[:, i : i + 1], factors_train[:, j])
            scores[i, j] = classifier.score(codes_test[:, i : i + 1], factors_test[:, j])
    return scores


def top_two_gap(scores: np.ndarray) -> float:
    """Mean over factors j of (largest − second largest S_ij over codes i).  scores [k, F]"""
    top_two = -np.sort(-scores, axis=0)[:2]
    return float(np.mean(top_two[0] - top_two[1]))


def sap_score(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> float:
    """SAP = `top_two_gap` of the `sap_score_matrix`: does one code predict each factor much
    better than any other?

    codes_* [N_*, k] with k >= 2, factors_* [N_*, F]; factors with a single value in the
    training split are left out. With the one-code classifiers' ceilings, a perfect code of the
    shapes factors scores about 0.24, not 1.
    """
    if np.shape(codes_train)[1] < 2:
        raise ValueError(
            f"SAP compares the two most predictive codes but codes has {np.shape(codes_train)[1]} "
            "dimension: pass codes [N, k] with k >= 2"
        )
    factors_train, factors_test = np.asarray(factors_train), np.asarray(factors_test)
    varying = _varying(factors_train)
    scores = sap_score_matrix(
        codes_train, factors_train[:, varying], codes_test, factors_test[:, varying]
    )
    return top_two_gap(scores)


def modularity(mutual_information: np.ndarray) -> float:
    """Mean over codes i of 1 − δ_i, δ_i = Σ_{j ≠ j*} MI_ij² / ((F − 1) MI_ij*²), with
    j* = argmax_j MI_ij.

    mutual_information [k, F] with F >= 2 (see `mutual_information_matrix`). A code with
    information about one factor only scores 1, one with the same about every factor 0. As in
    disentanglement_lib a code with no information at all (a constant code) scores 0, so
    collapsed dimensions lower the mean.
    """
    squared = np.square(np.asarray(mutual_information, np.float64))
    top = squared.max(axis=1)
    informative = top > 0
    delta = (squared.sum(axis=1) - top) / ((squared.shape[1] - 1) * np.where(informative, top, 1.0))
    return float(np.mean(np.where(informative, 1.0 - delta, 0.0)))


def explicitness_per_factor(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    solver: str = "liblinear",
) -> np.ndarray:
    """Per factor, the test ROC AUC of a `logistic_regression(solver)` of v_j from all codes,
    averaged over the values of v_j that occur in both splits (the AUC of the value's
    probability column against "v_j equals the value").

    codes_* [N_*, k] (standardised with the training codes' mean and s.d., as
    disentanglement_lib does; a constant code is left as it is where the library divides by
    zero), factors_* [N_*, F] each taking >= 2 values in the training split -> [F], NaN for a
    factor with a single value in the test split. With every value in both splits this is the
    library's macro-averaged roc_auc_score.
    """
    from sklearn.metrics import roc_auc_score  # see dci_classifier

    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant code stays constant instead of NaN
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    scores = []
    for j in range(factors_train.shape[1]):
        classifier = logistic_regression(solver).fit(x_train, factors_train[:, j])
        probabilities = classifier.predict_proba(x_test)
        aucs = [
            roc_auc_score(factors_test[:, j] == value, probabilities[:, column])
            for column, value in enumerate(classifier.classes_)
            if 0 < np.sum(factors_test[:, j] == value) < len(factors_test)
        ]
        scores.append(np.mean(aucs) if aucs else np.nan)
    return np.array(scores)


def explicitness(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    solver: str = "liblinear",
) -> float:
    """Mean over factors of `explicitness_per_factor`, in [0, 1] (chance 0.5): can a linear
    classifier read every factor from the codes?

    codes_* [N_*, k], factors_* [N_*, F]; factors with a single value in either split are left
    out.
    """
    factors_train, factors_test = np.asarray(factors_train), np.asarray(factors_test)
    varying = _varying(factors_train)
    return float(
        np.nanmean(
            explicitness_per_factor(
                codes_train,
                factors_train[:, varying],
                codes_test,
                factors_test[:, varying],
                solver,
            )
        )
    )


def sample_factors(
    rng: np.random.Generator, factor_sizes: Sequence[int], shape: tuple[int, ...]
) -> np.ndarray:
    """Factor indices [*shape, F], each factor uniform over its factor_sizes[f] values."""
    return np.stack([rng.integers(0, size, shape) for size in factor_sizes], axis=-1)


def _fix_one_factor(
    rng: np.random.Generator, factors: np.ndarray, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Picks one factor per batch uniformly and copies it from `source`.

    factors [P, B, F], source broadcastable to it -> (factors with column fixed[p] of batch p
    taken from source [P, B, F], fixed [P]).
    """
    fixed = rng.integers(0, factors.shape[-1], factors.shape[0])
    chosen = np.arange(factors.shape[-1]) == fixed[:, None, None]
    return np.where(chosen, source, factors), fixed


def _represent(represent: Representation, factors: np.ndarray) -> np.ndarray:
    """Codes [..., k] of factor indices [..., F], through one call of `represent`."""
    codes = np.asarray(represent(factors.reshape(-1, factors.shape[-1])), np.float64)
    return codes.reshape(factors.shape[:-1] + codes.shape[-1:])


def beta_vae_points(
    represent: Representation,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    num_points: int,
    batch_size: int = POINT_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """The BetaVAE score's data: (features [P, k], labels [P]).

    For each point p a factor y_p is drawn uniformly, then batch_size pairs of factor vectors,
    uniform except that both halves of a pair share factor y_p; the feature is mean |z1 − z2|
    over the pairs: small on the codes that carry y_p.
    """
    first = sample_factors(rng, factor_sizes, (num_points, batch_size))
    second, fixed = _fix_one_factor(
        rng, sample_factors(rng, factor_sizes, (num_points, batch_size)), first
    )
    codes = _represent(represent, np.stack([first, second]))  # [2, P, B, k]
    return np.abs(codes[0] - codes[1]).mean(axis=1), fixed


def beta_vae_score(
    represent: Representation,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    num_train: int = TRAIN_POINTS,
    num_eval: int = EVAL_POINTS,
    batch_size: int = POINT_BATCH,
    solver: str = "liblinear",
) -> float:
    """Evaluation accuracy of a `logistic_regression(solver)` (disentanglement_lib's: liblinear)
    predicting the fixed factor from `beta_vae_points` features, fitted on num_train points.
    Chance is 1/F; a code with one dimension per factor scores 1. Any representation whose
    codes each mix the factors differently is also read well: the regression sees which codes
    vary least.
    """
    features, labels = beta_vae_points(represent, factor_sizes, rng, num_train, batch_size)
    classifier = logistic_regression(solver).fit(features, labels)
    features, labels = beta_vae_points(represent, factor_sizes, rng, num_eval, batch_size)
    return float(classifier.score(features, labels))


def factor_vae_votes(
    represent: Representation,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    num_votes: int,
    variances: np.ndarray,
    batch_size: int = POINT_BATCH,
) -> np.ndarray:
    """Votes [F, k]: how often fixing factor j left code i with the least variance.

    Each vote draws a factor j uniformly and batch_size factor vectors sharing one value of j;
    among the codes with sqrt(variances) >= PRUNE_SCALE it votes for argmin_i Var_batch(z_i) /
    variances_i.  variances [k]: each code's variance over the whole data.
    """
    factors = sample_factors(rng, factor_sizes, (num_votes, batch_size))
    factors, fixed = _fix_one_factor(rng, factors, factors[:, :1])
    active = np.flatnonzero(np.sqrt(variances) >= PRUNE_SCALE)
    local = _represent(represent, factors)[..., active].var(axis=1, ddof=1)  # [V, active]
    chosen = active[np.argmin(local / variances[active], axis=1)]
    votes = np.zeros((len(factor_sizes), len(variances)), np.int64)
    np.add.at(votes, (fixed, chosen), 1)
    return votes


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> float:
    """Accuracy on eval_votes [F, k] of the classifier that maps code i to the factor with most
    train_votes [F, k] for it (ties: the lowest factor index)."""
    classifier = np.argmax(train_votes, axis=0)
    return float(eval_votes[classifier, np.arange(eval_votes.shape[1])].sum() / eval_votes.sum())


def factor_vae_score(
    represent: Representation,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    num_train: int = TRAIN_POINTS,
    num_eval: int = EVAL_POINTS,
    num_variance: int = VARIANCE_POINTS,
    batch_size: int = POINT_BATCH,
) -> float:
    """`majority_vote_accuracy` of num_eval `factor_vae_votes` under the classifier of num_train
    votes, the variances from num_variance codes of uniformly drawn factors. Chance is about
    1/F; a code with one dimension per factor scores exactly 1. 0 when every code is collapsed
    (disentanglement_lib's convention).
    """
    variances = _represent(represent, sample_factors(rng, factor_sizes, (num_variance,))).var(
        axis=0, ddof=1
    )
    if not np.any(np.sqrt(variances) >= PRUNE_SCALE):
        return 0.0
    train = factor_vae_votes(represent, factor_sizes, rng, num_train, variances, batch_size)
    evaluation = factor_vae_votes(represent, factor_sizes, rng, num_eval, variances, batch_size)
    return majority_vote_accuracy(train, evaluation)


def sample_codes(
    represent: Representation,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    num_points: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes [num_points, k], factors [num_points, F]) of uniformly drawn factors: the
    library's `generate_batch_factor_code`."""
    factors = sample_factors(rng, factor_sizes, (num_points,))
    return _represent(represent, factors), factors


def factor_metrics(
    codes: np.ndarray,
    factors: np.ndarray,
    num_train: int | None = None,
    *,
    dci_predictor: str = "extra_trees",
    logistic_solver: str = "liblinear",
) -> dict:
    """MIG, DCI, SAP, modularity and explicitness of mean codes [N, k] against ground-truth
    factor indices [N, F].

    The predictors of DCI, SAP and explicitness are fitted on the first num_train codes and
    scored on the rest. num_train=None: half of the codes, and MIG and modularity read all of
    them. With num_train given, MIG and modularity read the training codes only, as
    disentanglement_lib does (its protocol: 10,000 training and 5,000 test codes).
    """
    split = len(codes) // 2 if num_train is None else num_train
    train, test = (codes[:split], factors[:split]), (codes[split:], factors[split:])
    informative = (codes, factors) if num_train is None else train
    scores = dci(*train, *test, dci_predictor)
    mutual_information = mutual_information_matrix(
        informative[0], informative[1][:, _varying(informative[1])]
    )
    return {
        "mig": mig(*informative),
        "mig_per_factor": mig_per_factor(*informative).tolist(),
        **{f"dci_{name}": value for name, value in scores.items()},
        "sap_score": sap_score(*train, *test),
        "modularity": modularity(mutual_information),
        "explicitness": explicitness(*train, *test, logistic_solver),
    }


def rendered_factor_metrics(
    represent: Representation,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    num_train: int = TRAIN_POINTS,
    *,
    dci_predictor: str = "extra_trees",
    logistic_solver: str = "liblinear",
) -> dict:
    """`factor_metrics` as disentanglement_lib runs them: on the codes of num_train observations
    of uniformly drawn factors (MIG and modularity from these alone) and num_train // 2 more
    (its 10,000 and 5,000)."""
    codes, factors = sample_codes(represent, factor_sizes, rng, num_train + num_train // 2)
    return factor_metrics(
        codes, factors, num_train, dci_predictor=dci_predictor, logistic_solver=logistic_solver
    )
