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
    # factors explicit. Its L2 penalty misplaces some of the 32 or 40 classes' peaks by a
    # value, so even noise-free codes score about 0.97-0.98 on those factors with 10,000
    # training codes, and about 0.94 with the 1,000 here.
    rng = np.random.default_rng(18)
    train, test = uniform_factors(rng, 1000), uniform_factors(rng, 1000)

    def score(code):
        return dis.explicitness(code(train), train, code(test), test)

    perfect, mixed = score(perfect_code(rng)), score(mixed_code(rng))
    noise = score(lambda f: rng.normal(size=(len(f), 5)))

    assert perfect > 0.9 and mixed > 0.9, (perfect, mixed)
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
