"""MI, MIG and DCI on codes built from the shapes factors, against direct references and
codes whose answer is known."""

import math

import numpy as np
import pytest

from vae_jax.data.shapes import FACTOR_SIZES
from vae_jax.evaluation import disentanglement as dis

SIZES = np.array(FACTOR_SIZES)


def uniform_factors(rng, n):
    """Independent uniform factor indices [n, 5] with the shapes factor sizes."""
    return np.stack([rng.integers(0, size, n) for size in FACTOR_SIZES], axis=1)


def balanced_factors(rng, n):
    """[n, 5] factor indices, each value of each factor exactly n / size times (n % 480 == 0)."""
    return np.stack([rng.permutation(np.arange(n) % size) for size in FACTOR_SIZES], axis=1)


def reference_mutual_information(code, factor, num_bins):
    """Σ_ab p(a, b) log(p(a, b) / (p(a) p(b))) by explicit loops over the joint counts, with
    a = floor((z − min) / (max − min) · num_bins), the maximum put in the last bin."""
    low, high = min(code), max(code)
    bins = [min(int((z - low) / (high - low) * num_bins), num_bins - 1) for z in code]
    values = sorted(set(factor.tolist()))
    joint = np.zeros((num_bins, len(values)))
    for a, v in zip(bins, factor):
        joint[a, values.index(v)] += 1
    joint /= len(code)
    total = 0.0
    for a in range(num_bins):
        for b in range(len(values)):
            if joint[a, b] > 0:
                total += joint[a, b] * math.log(joint[a, b] / (joint[a].sum() * joint[:, b].sum()))
    return total


def test_mutual_information_matrix_matches_float64_double_loop_reference():
    rng = np.random.default_rng(0)
    factors = uniform_factors(rng, 300)[:, :3]
    # code 0 depends on the shape factor, code 1 on scale through a nonlinearity, code 2 is noise
    codes = np.stack(
        [
            factors[:, 0] + 0.5 * rng.normal(size=300),
            np.exp(factors[:, 1] / 3) + rng.normal(size=300),
            rng.normal(size=300),
        ],
        axis=1,
    )
    num_bins = 7

    mi = dis.mutual_information_matrix(codes, factors, num_bins)

    expected = np.array(
        [
            [reference_mutual_information(codes[:, i], factors[:, j], num_bins) for j in range(3)]
            for i in range(3)
        ]
    )
    assert mi.shape == (3, 3)
    np.testing.assert_allclose(mi, expected, rtol=1e-12, atol=1e-14)
    assert mi[0, 0] > 0.3 and mi[1, 1] > 0.3, f"dependent pairs should carry information: {mi}"


def test_factor_entropies_equal_log_size_for_uniformly_distributed_factors():
    factors = balanced_factors(np.random.default_rng(1), 4800)

    np.testing.assert_allclose(dis.factor_entropies(factors), np.log(SIZES), rtol=1e-12)


def test_default_twenty_bins_cap_mi_of_a_perfect_orientation_code_at_log_20():
    # 40 evenly spaced values in 20 equal-width bins: each bin holds exactly two neighbours,
    # so the code keeps log 20 of the factor's log 40 nats.
    factors = balanced_factors(np.random.default_rng(2), 4800)

    mi = dis.mutual_information_matrix(factors.astype(float), factors)

    np.testing.assert_allclose(mi[2, 2], np.log(20), rtol=1e-12)


def test_mig_is_one_when_each_code_is_one_factor_and_bins_separate_its_values():
    # With num_bins >= every factor size each value has its own bin, so the top MI is exactly
    # H(v_j). The second code is an independent factor whose plug-in MI is only the estimator's
    # bias, about (|A| − 1)(|B| − 1) / 2N <= 31·39 / 1e5 = 0.012 nats <= 0.004 · H(v_j).
    rng = np.random.default_rng(3)
    factors = uniform_factors(rng, 50_000)
    codes = factors.astype(float)

    mi = dis.mutual_information_matrix(codes, factors, num_bins=40)
    np.testing.assert_allclose(mi.max(axis=0), dis.factor_entropies(factors), rtol=1e-12)
    score = dis.mig(codes, factors, num_bins=40)
    assert 0.99 < score <= 1.0, f"MIG of codes equal to the factors is {score}, expected ~1"


def test_mig_is_near_zero_for_codes_independent_of_the_factors():
    rng = np.random.default_rng(4)
    factors = uniform_factors(rng, 10_000)
    codes = rng.normal(size=(10_000, 10))

    score = dis.mig(codes, factors)

    assert 0.0 <= score < 0.05, f"MIG of random codes is {score}, expected ~0"


def test_mig_is_zero_when_every_factor_is_encoded_by_two_identical_codes():
    # Each factor is read perfectly from two codes, so there is no gap between the best two.
    factors = uniform_factors(np.random.default_rng(5), 5000)
    codes = np.repeat(factors.astype(float), 2, axis=1)

    np.testing.assert_allclose(dis.mig_per_factor(codes, factors), 0.0, atol=1e-12)
    assert dis.mig(codes, factors) == pytest.approx(0.0, abs=1e-12)


def test_mig_leaves_out_factors_with_a_single_value():
    rng = np.random.default_rng(6)
    factors = uniform_factors(rng, 5000)
    factors[:, 1] = 3
    codes = factors + 0.1 * rng.normal(size=factors.shape)

    gaps = dis.mig_per_factor(codes, factors)

    assert np.isnan(gaps[1]) and not np.isnan(gaps[[0, 2, 3, 4]]).any(), f"gaps: {gaps}"
    assert dis.mig(codes, factors) == pytest.approx(gaps[[0, 2, 3, 4]].mean(), rel=1e-12)


def test_disentanglement_and_completeness_match_hand_computed_entropies():
    # Code 0 matters equally for both factors, code 1 for factor 1 only.
    importance = np.array([[1.0, 1.0], [0.0, 2.0]])
    # rows: D_0 = 1 − H_2(½, ½) = 0, D_1 = 1, weights ½, ½
    expected_d = 0.5 * 0.0 + 0.5 * 1.0
    # columns: C_0 = 1, C_1 = 1 − H_2(⅓, ⅔), weights ¼, ¾
    h_column_1 = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))
    expected_c = 0.25 * 1.0 + 0.75 * (1.0 - h_column_1)

    assert dis.disentanglement(importance) == pytest.approx(expected_d, rel=1e-12)
    assert dis.completeness(importance) == pytest.approx(expected_c, rel=1e-12)


def test_disentanglement_and_completeness_are_one_for_a_permutation_and_zero_for_uniform():
    # An all-zero row is an uninformative code: it carries no weight.
    permutation = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    uniform = np.ones((4, 3))

    assert dis.disentanglement(permutation) == pytest.approx(1.0)
    assert dis.completeness(permutation) == pytest.approx(1.0)
    assert dis.disentanglement(uniform) == pytest.approx(0.0, abs=1e-12)
    assert dis.completeness(uniform) == pytest.approx(0.0, abs=1e-12)


def test_dci_is_near_one_for_codes_that_are_the_factors_plus_uninformative_dimensions():
    rng = np.random.default_rng(7)
    train, test = uniform_factors(rng, 5000), uniform_factors(rng, 2000)

    def encode(factors):
        return np.concatenate([factors / SIZES, rng.normal(size=(len(factors), 3))], axis=1)

    scores = dis.dci(encode(train), train, encode(test), test)

    assert scores["disentanglement"] > 0.9, scores
    assert scores["completeness"] > 0.9, scores
    assert scores["informativeness"] > 0.98, scores


def test_dci_is_near_zero_for_codes_that_rotate_two_factors_by_45_degrees():
    # z = (x + y, x − y): reading either factor needs both codes equally (swapping the codes
    # maps y − 15.5 to its mirror image, which has the same distribution), so every code
    # spreads its importance evenly over the factors and vice versa.
    rng = np.random.default_rng(8)
    train, test = rng.integers(0, 32, (5000, 2)), rng.integers(0, 32, (2000, 2))

    def encode(factors):
        return np.stack([factors[:, 0] + factors[:, 1], factors[:, 0] - factors[:, 1]], axis=1)

    scores = dis.dci(encode(train), train, encode(test), test)

    assert scores["disentanglement"] < 0.02, scores
    assert scores["completeness"] < 0.02, scores
    assert scores["informativeness"] > 0.5, f"the rotated codes should still predict: {scores}"


def test_dci_informativeness_is_chance_for_codes_independent_of_the_factors():
    rng = np.random.default_rng(9)
    train, test = uniform_factors(rng, 5000), uniform_factors(rng, 2000)

    scores = dis.dci(rng.normal(size=(5000, 10)), train, rng.normal(size=(2000, 10)), test)

    chance = np.mean(1 / SIZES)
    assert scores["informativeness"] == pytest.approx(chance, abs=0.03), scores


# Factor indices -> unit-variance factors: the mean and s.d. of a uniform index in 0..size−1.
MEANS, STDS = (SIZES - 1) / 2, np.sqrt((SIZES**2 - 1) / 12)


def standardised(factors):
    """Factor indices [N, 5] -> [N, 5], each column of mean 0 and variance 1."""
    return (factors - MEANS) / STDS


def hadamard_mixing():
    """M [8, 5]: the first five columns of the 8x8 Sylvester Hadamard matrix over √5. Every
    code is ±1/√5 times every factor: fixing any one factor lowers every code's variance by
    the same amount, so nothing tells which factor is fixed (a generic rotation would: the
    code with the largest weight on the factor varies least)."""
    h = np.array([[1.0]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    return h[:, :5] / np.sqrt(5)


def perfect_code(rng, noise=0.01):
    """Representation: each code is one standardised factor plus N(0, noise²)."""
    return lambda factors: standardised(factors) + noise * rng.normal(size=factors.shape)


def mixed_code(rng, noise=0.01):
    """Representation: the standardised factors mixed by `hadamard_mixing`, 8 codes."""
    mixing = hadamard_mixing()
    return lambda factors: (
        standardised(factors) @ mixing.T + noise * rng.normal(size=(len(factors), 8))
    )


def test_beta_vae_features_vanish_exactly_on_the_code_of_the_fixed_factor():
    rng = np.random.default_rng(10)

    features, fixed = dis.beta_vae_points(standardised, FACTOR_SIZES, rng, 200)

    assert features.shape == (200, 5) and set(fixed) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(features[np.arange(200), fixed], 0.0)
    others = np.arange(5) != fixed[:, None]
    assert features[others].min() > 0.5, "codes of free factors should differ across pairs"


def test_beta_vae_score_is_one_for_a_perfect_code_and_near_chance_for_equal_mixing():
    rng = np.random.default_rng(11)

    perfect = dis.beta_vae_score(perfect_code(rng), FACTOR_SIZES, rng, 500, 250)
    mixed = dis.beta_vae_score(mixed_code(rng), FACTOR_SIZES, rng, 500, 250)

    assert perfect == 1.0, perfect
    assert mixed < 0.3, f"equal mixing scores {mixed}, chance is 0.2"


def test_majority_vote_accuracy_matches_a_hand_count():
    # Code 0 goes to factor 1 (3 > 1 votes), code 1 to factor 0, code 2 to factor 0 (a tie
    # goes to the lower factor). Of the 10 evaluation votes, 2 + 3 + 1 agree.
    train = np.array([[1, 4, 2], [3, 0, 2]])
    evaluation = np.array([[1, 3, 1], [2, 2, 1]])

    assert dis.majority_vote_accuracy(train, evaluation) == pytest.approx(6 / 10)


def test_factor_vae_score_is_exactly_one_for_codes_equal_to_the_factors():
    # The fixed factor's code has zero variance in its batch, every other code a positive one.
    score = dis.factor_vae_score(
        standardised, FACTOR_SIZES, np.random.default_rng(12), 300, 150, 1000
    )

    assert score == 1.0


def test_factor_vae_score_gives_no_votes_to_collapsed_codes():
    # A code of s.d. 0.01 < PRUNE_SCALE would have the least variance in every batch.
    rng = np.random.default_rng(13)
    factors = dis.sample_factors(rng, FACTOR_SIZES, (2000,))
    codes = np.concatenate([perfect_code(rng)(factors), 0.01 * rng.normal(size=(2000, 1))], 1)

    votes = dis.factor_vae_votes(
        perfect_code(rng), FACTOR_SIZES, rng, 200, codes.var(axis=0, ddof=1)
    )
    constant = dis.factor_vae_score(lambda f: np.zeros((len(f), 3)), FACTOR_SIZES, rng, 10, 5, 100)

    assert votes[:, 5].sum() == 0 and votes.sum() == 200
    np.testing.assert_array_equal(votes[:, :5], np.diag(np.diag(votes[:, :5])))
    assert constant == 0.0


def test_factor_vae_score_is_near_chance_for_equal_mixing():
    rng = np.random.default_rng(14)

    score = dis.factor_vae_score(mixed_code(rng), FACTOR_SIZES, rng, 500, 250, 2000)

    assert score < 0.35, f"equal mixing scores {score}, chance is about 0.2"


def test_sap_of_a_perfect_code_reaches_the_ceiling_of_one_code_linear_classifiers():
    # One-vs-rest LinearSVC on one code predicts only a few values of a many-valued factor:
    # measured on 10,000 / 5,000 noise-free unit-variance codes the true code's accuracies are
    # 1.0, 0.65, 0.047, 0.063, 0.064 and the gaps to the next code 0.664, 0.48, 0.022, 0.029,
    # 0.030, so SAP on the shapes factors cannot exceed about 0.245.
    rng = np.random.default_rng(15)
    train, test = uniform_factors(rng, 4000), uniform_factors(rng, 2000)
    code = perfect_code(rng)

    scores = dis.sap_score_matrix(code(train), train, code(test), test)
    sap = dis.sap_score(code(train), train, code(test), test)

    assert scores[0, 0] > 0.99 and 0.45 < scores[1, 1] < 0.75, np.diag(scores)
    assert np.all(np.argmax(scores, axis=0) == np.arange(5)), scores
    assert 0.2 < sap < 0.27, sap


def test_sap_is_zero_when_every_factor_is_encoded_by_two_identical_codes_or_mixed_equally():
    rng = np.random.default_rng(16)
    train, test = uniform_factors(rng, 2000), uniform_factors(rng, 1000)
    mixed = mixed_code(rng)

    repeated = dis.sap_score(
        np.repeat(standardised(train), 2, 1), train, np.repeat(standardised(test), 2, 1), test
    )
    mixed_sap = dis.sap_score(mixed(train), train, mixed(test), test)

    assert repeated == pytest.approx(0.0, abs=1e-12)
    assert mixed_sap < 0.03, mixed_sap


def test_modularity_is_one_for_a_diagonal_mutual_information_and_hand_computed_otherwise():
    # Row 0: δ = (1² + 0²) / (2 · 2²) = 1/8; row 1 carries nothing (scores 0); row 2 the same
    # about every factor: δ = 2/2.
    mi = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])

    assert dis.modularity(np.diag([0.3, 1.0, 2.0])) == 1.0
    assert dis.modularity(mi) == pytest.approx((1 - 1 / 8 + 0 + 0) / 3, rel=1e-12)


def test_modularity_is_near_one_for_a_perfect_code_and_low_for_equal_mixing():
    rng = np.random.default_rng(17)
    factors = uniform_factors(rng, 10_000)

    perfect = dis.modularity(dis.mutual_information_matrix(perfect_code(rng)(factors), factors))
    mixed = dis.modularity(dis.mutual_information_matrix(mixed_code(rng)(factors), factors))

    assert perfect > 0.99, perfect
    assert mixed < 0.4, mixed


def test_explicitness_is_high_for_any_linear_code_of_the_factors_and_half_for_noise():
    # The logistic regression reads all codes together, so an invertible mixing keeps the
    # factors explicit. Fitted one-vs-rest (the library's liblinear), a class's regression on
    # codes linear in the factor cannot single out a middle value (only the normalisation over
    # classes helps), so even noise-free codes score only about 0.82-0.91 on the 32- or
    # 40-valued factors with the 1,000 training codes here: 0.89 in all (0.94 with 10,000
    # training codes; lbfgs's multinomial regression 0.94 and 0.99).
    rng = np.random.default_rng(18)
    train, test = uniform_factors(rng, 1000), uniform_factors(rng, 1000)

    def score(code):
        return dis.explicitness(code(train), train, code(test), test)

    perfect, mixed = score(perfect_code(rng)), score(mixed_code(rng))
    noise = score(lambda f: rng.normal(size=(len(f), 5)))

    assert perfect > 0.85 and mixed > 0.85, (perfect, mixed)
    assert abs(noise - 0.5) < 0.05, noise


def test_explicitness_of_one_code_of_a_binary_factor_is_the_codes_own_auc():
    # The regression's probability is monotone in the one code, so its AUC is the code's:
    # the fraction of (positive, negative) pairs the code orders correctly.
    rng = np.random.default_rng(19)
    factor = rng.integers(0, 2, (2, 400, 1))
    codes = factor + rng.normal(size=factor.shape)

    score = dis.explicitness(codes[0], factor[0], codes[1], factor[1])

    positives, negatives = codes[1][factor[1] == 1], codes[1][factor[1] == 0]
    expected = np.mean(positives[:, None] > negatives[None, :])
    assert score == pytest.approx(expected, rel=1e-12)


# disentanglement_lib's formulas, re-implemented in float64 numpy from its source
# (evaluation/metrics/{utils,mig,dci,sap_score,modularity_explicitness,beta_vae}.py), for the
# scores below to be checked against. Its classifiers are scikit-learn's, except
# LogisticRegression(), which was liblinear one-vs-rest in the scikit-learn it ran on: that one is
# solved here from its objective.


def library_discretize(codes, num_bins=20):
    """utils._histogram_discretize on codes [N, k]: np.digitize against np.histogram's edges."""
    return np.stack(
        [np.digitize(c, np.histogram(c, num_bins)[1][:-1]) for c in codes.T.astype(np.float64)],
        axis=1,
    )


def library_mutual_information(a, b):
    """sklearn.metrics.mutual_info_score of two label vectors [N], from the contingency table."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


def library_mi_matrix(codes, factors):
    bins = library_discretize(codes)
    return np.array([[library_mutual_information(z, v) for v in factors.T] for z in bins.T])


def library_mig(codes, factors):
    """mig._compute_mig: mean over factors of (top − second MI) / H(v_j)."""
    mi = np.sort(library_mi_matrix(codes, factors), axis=0)[::-1]
    entropy = np.array([library_mutual_information(v, v) for v in factors.T])
    return float(np.mean((mi[0] - mi[1]) / entropy))


def library_modularity(codes, factors):
    squared = np.square(library_mi_matrix(codes, factors))
    top = squared.max(axis=1)
    score = 1.0 - (squared.sum(axis=1) - top) / (top * (squared.shape[1] - 1.0))
    score[top == 0] = 0.0
    return float(np.mean(score))


def entropy_base(p, base):
    """scipy.stats.entropy(p, base=base) of each column of p [n, m] (normalised first)."""
    p = p / p.sum(axis=0, keepdims=True)
    return -np.sum(p * np.log(p), axis=0) / np.log(base)


def library_dci(codes_train, factors_train, codes_test, factors_test):
    """dci._compute_dci: GradientBoostingClassifier() per factor, |feature_importances_| as R,
    D and C with scipy's entropy of R + 1e-11, informativeness the mean test accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier

    k, num_factors = codes_train.shape[1], factors_train.shape[1]
    importance, accuracy = np.zeros((k, num_factors)), []
    for j in range(num_factors):
        model = GradientBoostingClassifier(random_state=dis.PREDICTOR_SEED)
        model.fit(codes_train, factors_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        accuracy.append(np.mean(model.predict(codes_test) == factors_test[:, j]))
    per_code = 1.0 - entropy_base(importance.T + 1e-11, num_factors)
    per_factor = 1.0 - entropy_base(importance + 1e-11, k)
    return {
        "disentanglement": float(np.sum(per_code * importance.sum(1) / importance.sum())),
        "completeness": float(np.sum(per_factor * importance.sum(0) / importance.sum())),
        "informativeness": float(np.mean(accuracy)),
    }


def library_sap(codes_train, factors_train, codes_test, factors_test):
    """sap_score._compute_sap, discrete factors: LinearSVC(C=0.01, balanced) per code and
    factor, the mean over factors of the gap between the two best test accuracies."""
    from sklearn.svm import LinearSVC

    scores = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for i in range(codes_train.shape[1]):
        for j in range(factors_train.shape[1]):
            svc = LinearSVC(C=0.01, class_weight="balanced")
            svc.fit(codes_train[:, i : i + 1], factors_train[:, j])
            scores[i, j] = np.mean(svc.predict(codes_test[:, i : i + 1]) == factors_test[:, j])
    ordered = np.sort(scores, axis=0)
    return float(np.mean(ordered[-1] - ordered[-2]))


def liblinear_binary(x, positive):
    """liblinear's L2 logistic regression (C = 1) of the labels positive [N] (bool) on x [N, d]:
    argmin ½|w|² + Σ log(1 + exp(−t·w·[x, 1])), t = ±1, the intercept penalised like a weight.
    Returns w [d + 1], the last entry the intercept."""
    import scipy.optimize

    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    t = np.where(positive, 1.0, -1.0)

    def objective(w):
        margin = t * (xb @ w)
        return 0.5 * w @ w + np.sum(np.logaddexp(0.0, -margin)), w - xb.T @ (
            t / (1 + np.exp(margin))
        )

    options = dict(gtol=1e-12, ftol=1e-15, maxiter=10_000)
    return scipy.optimize.minimize(
        objective, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B", options=options
    ).x


def library_logistic_probabilities(x_train, y_train, x_test):
    """What LogisticRegression() (liblinear, one-vs-rest) predicted: per class its binary
    regression's sigmoid, normalised over classes; [N_test, classes], classes sorted."""
    classes = np.unique(y_train)
    xb = np.concatenate([x_test, np.ones((len(x_test), 1))], axis=1)
    if len(classes) == 2:
        p = 1 / (1 + np.exp(-xb @ liblinear_binary(x_train, y_train == classes[1])))
        return np.stack([1 - p, p], axis=1), classes
    sigmoids = np.stack(
        [1 / (1 + np.exp(-xb @ liblinear_binary(x_train, y_train == c))) for c in classes], 1
    )
    return sigmoids / sigmoids.sum(axis=1, keepdims=True), classes


def auc(positive, score):
    """ROC AUC: the fraction of (positive, negative) pairs the score orders, ties counting ½."""
    pos, neg = score[positive], score[~positive]
    return np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))


def library_explicitness(codes_train, factors_train, codes_test, factors_test):
    """modularity_explicitness: codes standardised by the training mean and s.d., per factor the
    macro-averaged one-vs-rest ROC AUC of the regression's probabilities, averaged."""
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    scores = []
    for j in range(factors_train.shape[1]):
        p, classes = library_logistic_probabilities(x_train, factors_train[:, j], x_test)
        scores.append(
            np.mean([auc(factors_test[:, j] == c, p[:, i]) for i, c in enumerate(classes)])
        )
    return float(np.mean(scores))


SMALL_SIZES = (3, 4, 2)


def small_code(rng, n):
    """Fixed small codes [n, 4] of factors [n, 3] (sizes 3, 4, 2): a noisy linear code of the
    first, a non-monotone one of the second, a mix of the second and third, and noise."""
    factors = np.stack([rng.integers(0, size, n) for size in SMALL_SIZES], axis=1)
    codes = np.stack(
        [
            factors[:, 0] + 0.7 * rng.normal(size=n),
            np.cos(1.5 * factors[:, 1]) + 0.5 * rng.normal(size=n),
            0.3 * factors[:, 1] + factors[:, 2] + 0.5 * rng.normal(size=n),
            rng.normal(size=n),
        ],
        axis=1,
    )
    return codes, factors


def test_dci_with_gradient_boosting_matches_disentanglement_libs_importance_formula():
    # Two factors of 3 and 2 values: 100 stages of 3 + 1 trees, about a second.
    codes, factors = small_code(np.random.default_rng(20), 300)
    factors = factors[:, [0, 2]]

    scores = dis.dci(codes[:200], factors[:200], codes[200:], factors[200:], "gradient_boosting")

    expected = library_dci(codes[:200], factors[:200], codes[200:], factors[200:])
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-9), (name, scores, expected)
    # The fast predictor is another number, not the library's.
    fast = dis.dci(codes[:200], factors[:200], codes[200:], factors[200:], "extra_trees")
    assert abs(fast["disentanglement"] - expected["disentanglement"]) > 1e-3, (fast, expected)


def test_liblinear_logistic_regression_matches_a_float64_one_vs_rest_reference():
    codes, factors = small_code(np.random.default_rng(21), 300)
    for j in range(3):  # three, four and two classes
        classifier = dis.logistic_regression("liblinear").fit(codes[:200], factors[:200, j])
        expected, classes = library_logistic_probabilities(
            codes[:200], factors[:200, j], codes[200:]
        )
        np.testing.assert_array_equal(classifier.classes_, classes)
        np.testing.assert_allclose(classifier.predict_proba(codes[200:]), expected, atol=2e-4)


def test_explicitness_matches_the_librarys_formula_with_one_vs_rest_liblinear_by_default():
    # Today's scikit-learn default (lbfgs, multinomial) scores these codes about 0.02 higher.
    codes, factors = small_code(np.random.default_rng(22), 300)
    train, test = (codes[:200], factors[:200]), (codes[200:], factors[200:])

    expected = library_explicitness(*train, *test)

    assert dis.explicitness(*train, *test) == pytest.approx(expected, abs=1e-4)
    assert abs(dis.explicitness(*train, *test, "lbfgs") - expected) > 5e-3


def test_beta_vae_score_matches_the_librarys_one_vs_rest_regression_by_default():
    # Three factors, four codes that mix them, noise from the representation's own seeded
    # generator, so that the reference sees the same features. lbfgs scores 0.855 here.
    sizes = (3, 4, 5)
    mixing = np.array([[1, 0.6, 0], [0, 1, 0.5], [0.4, 0, 1], [0.3, 0.3, 0.3]])

    def representation():
        noise = np.random.default_rng(2)
        return lambda f: (
            (f - (np.array(sizes) - 1) / 2) @ mixing.T + 0.8 * noise.normal(size=(len(f), 4))
        )

    score = dis.beta_vae_score(representation(), sizes, np.random.default_rng(1), 200, 200, 8)

    rng, represent = np.random.default_rng(1), representation()
    x_train, y_train = dis.beta_vae_points(represent, sizes, rng, 200, 8)
    x_test, y_test = dis.beta_vae_points(represent, sizes, rng, 200, 8)
    probabilities, classes = library_logistic_probabilities(x_train, y_train, x_test)
    expected = np.mean(classes[np.argmax(probabilities, axis=1)] == y_test)
    assert score == pytest.approx(expected, abs=1e-12), (score, expected)


def test_factor_metrics_with_a_training_size_are_the_librarys_scores_of_that_split():
    # disentanglement_lib: MIG and modularity of the training codes only; DCI, SAP and
    # explicitness fitted on them and scored on the test codes.
    codes, factors = small_code(np.random.default_rng(23), 360)
    factors = factors[:, [0, 2]]  # fewer classes: fewer trees to boost
    train, test = (codes[:240], factors[:240]), (codes[240:], factors[240:])

    scores = dis.factor_metrics(
        codes, factors, 240, dci_predictor="gradient_boosting", logistic_solver="liblinear"
    )

    expected = {
        "mig": library_mig(*train),
        "modularity": library_modularity(*train),
        **{f"dci_{k}": v for k, v in library_dci(*train, *test).items()},
        "sap_score": library_sap(*train, *test),
        "explicitness": library_explicitness(*train, *test),
    }
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-4), (name, scores[name], value)


def test_rendered_factor_metrics_fit_on_num_train_fresh_codes_and_score_half_as_many_more():
    drawn = []

    def code_of(factors):
        return np.stack([factors[:, 0], np.cos(1.5 * factors[:, 1]), factors[:, 2]], axis=1)

    def represent(factors):
        drawn.append(factors)
        return code_of(factors)

    scores = dis.rendered_factor_metrics(represent, SMALL_SIZES, np.random.default_rng(24), 200)

    factors = np.concatenate(drawn)
    assert factors.shape == (300, 3)
    assert scores == dis.factor_metrics(code_of(factors), factors, 200)


def test_evaluation_hands_the_configured_points_and_classifiers_to_the_rendered_metrics(
    monkeypatch,
):
    from types import SimpleNamespace

    from experiments import shapes
    from vae_jax import evaluation

    calls = []

    def record(represent, factor_sizes, rng, num_train, **options):
        calls.append((represent(np.zeros((3, 5), np.int64)), factor_sizes, num_train, options))
        return {"mig": 0.5}

    monkeypatch.setattr(evaluation.disentanglement, "rendered_factor_metrics", record)
    config = shapes.get_config("study")
    config.eval.factor_metric_points = 40
    # A stand-in run whose code of an image is its mean pixel.
    run = SimpleNamespace(
        config=config, encode=lambda x: SimpleNamespace(mean=x.mean(axis=(1, 2, 3))[:, None])
    )

    scores = evaluation._rendered_factor_metrics(run, FACTOR_SIZES)

    [(codes, sizes, num_train, options)] = calls
    assert codes.shape == (3, 1) and np.all(codes > 0), codes
    assert sizes == FACTOR_SIZES and num_train == 40
    assert options == {"dci_predictor": "gradient_boosting", "logistic_solver": "liblinear"}
    assert scores == {"mig": 0.5, "factor_metric_points": 40}


def test_study_variant_scores_with_disentanglement_libs_protocol_and_the_default_is_fast():
    from experiments import dsprites, shapes

    for config in (shapes.get_config("study"), dsprites.get_config("study,factor_vae")):
        assert config.eval.factor_metric_points == dis.TRAIN_POINTS == 10_000
        assert config.eval.dci_predictor == "gradient_boosting" == dis.DCI_PREDICTORS[0]
        assert config.eval.logistic_solver == "liblinear" == dis.LOGISTIC_SOLVERS[0]
        assert config.eval.factor_score_points is None  # BetaVAE / FactorVAE: 10,000 / 5,000
    default = shapes.get_config()
    assert default.eval.dci_predictor == "extra_trees"
    assert default.eval.factor_metric_points is None


def test_config_names_the_key_and_the_choices_of_an_unknown_predictor_or_solver():
    from experiments import shapes
    from vae_jax.config import ConfigError, validate, validation

    assert validation.DCI_PREDICTORS == dis.DCI_PREDICTORS
    assert validation.LOGISTIC_SOLVERS == dis.LOGISTIC_SOLVERS
    for key, value, choices in [
        ("dci_predictor", "random_forest", "gradient_boosting, extra_trees"),
        ("logistic_solver", "saga", "liblinear, lbfgs"),
    ]:
        config = shapes.get_config()
        config.eval[key] = value
        with pytest.raises(ConfigError, match=f"eval.{key}='{value}'.*{choices}"):
            validate(config)
