"""Disentanglement metrics from latent codes and ground-truth factors: MI, MIG and DCI.

Inputs are numpy arrays, codes [N, k] float (posterior means, say) and factors [N, F] int
indices (e.g. `shapes.factor_indices`); outputs are floats, informations in nats.

    MIG  Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"
    DCI  Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of
         Disentangled Representations"

Codes are discretised as in Locatello et al. 2019 (disentanglement_lib): equal-width bins
per dimension between its min and max. MI of a code is at most log(num_bins), so with the
default 20 bins a perfect code of a factor with more values (shapes: orientation 40, pos 32)
scores MI < H(factor): pass num_bins >= the largest factor size to compare against 1.

DCI predictor: per factor, an ExtraTreesClassifier (50 trees, every code considered at each
split, at least 20 examples per leaf), with its impurity importances as R. disentanglement_lib
uses gradient-boosted trees, which fit one tree per class per stage: too slow for the 40-class
orientation. Of the predictors compared (timings in the README's Performance section), ExtraTrees
was the fastest, the most accurate, and put the least importance on random code dimensions: a
split must pick the best of all codes, and its random thresholds do not chase noise in small
leaves. HistGradientBoosting has no `feature_importances_`; L1-logistic importances depend on
each code's scale, and a linear model misreads codes that are not monotone in the factor (a
circular orientation code).
"""

from __future__ import annotations

import numpy as np

# Fixed so that DCI of the same codes is the same number on every call.
PREDICTOR_SEED = 0


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


def importance_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Fits one classifier per factor, codes -> v_j, on the training split.

    codes_* [N_*, k], factors_* [N_*, F] -> (R [k, F], test accuracies [F]).
    R_ij = impurity importance of code i for predicting v_j; each column sums to 1
    (or is all zero when the trees never split).
    """
    # Imported here: scikit-learn takes a second to import, which training never needs.
    from sklearn.ensemble import ExtraTreesClassifier

    importances, accuracies = [], []
    for j in range(np.shape(factors_train)[1]):
        predictor = ExtraTreesClassifier(
            n_estimators=50,
            max_features=None,
            min_samples_leaf=20,
            random_state=PREDICTOR_SEED,
            n_jobs=-1,
        ).fit(codes_train, factors_train[:, j])
        importances.append(predictor.feature_importances_)
        accuracies.append(predictor.score(codes_test, factors_test[:, j]))
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


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> dict[str, float]:
    """Disentanglement, completeness and informativeness (mean test accuracy) of codes.

    codes_* [N_*, k], factors_* [N_*, F]. Factors with a single value in the training split
    are left out: nothing can be predicted of them.
    """
    factors_train, factors_test = np.asarray(factors_train), np.asarray(factors_test)
    varying = [j for j in range(factors_train.shape[1]) if np.unique(factors_train[:, j]).size > 1]
    if not varying:
        raise ValueError(
            "every factor takes a single value in factors_train, so DCI is "
            "undefined: pass factors that vary"
        )
    importance, accuracies = importance_matrix(
        codes_train, factors_train[:, varying], codes_test, factors_test[:, varying]
    )
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness": float(np.mean(accuracies)),
    }


def factor_metrics(codes: np.ndarray, factors: np.ndarray) -> dict:
    """MIG and DCI of mean codes [N, k] against ground-truth factor indices [N, F]; DCI's
    predictors are fitted on the first half of the examples and scored on the second."""
    half = len(codes) // 2
    scores = dci(codes[:half], factors[:half], codes[half:], factors[half:])
    return {
        "mig": mig(codes, factors),
        "mig_per_factor": mig_per_factor(codes, factors).tolist(),
        **{f"dci_{name}": value for name, value in scores.items()},
    }
