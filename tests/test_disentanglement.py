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
