"""The procedural shapes dataset: rendering geometry, factor bookkeeping, splits and batching."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import data, parallel
from vae_jax.config import get_config
from vae_jax.data import shapes

SQUARE, ELLIPSE, HEART = 0, 1, 2
BASE = (SQUARE, 2, 3, 12, 20)  # an off-centre, rotated pose that no factor step leaves unchanged
QUARTER_TURN = shapes.FACTOR_SIZES[2] // 4


def render_one(*index: int) -> np.ndarray:
    """One image [64, 64] for factor indices (shape, scale, orientation, pos_x, pos_y)."""
    return shapes.render(np.array([index]))[0, :, :, 0]


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(x, y) in pixels of a [64, 64] image, using pixel centres."""
    ys, xs = np.nonzero(image)
    return xs.mean() + 0.5, ys.mean() + 0.5


def mean_area(indices: list[list[int]]) -> float:
    """Mean white-pixel count over images given by factor indices [N, 5]."""
    return float(shapes.render(np.array(indices)).sum(axis=(1, 2, 3)).mean())


def random_indices(n: int, seed: int) -> np.ndarray:
    flat = np.random.default_rng(seed).integers(0, shapes.NUM_IMAGES, n)
    return shapes.factor_indices(flat)


def test_image_count_is_product_of_factor_sizes():
    assert len(shapes.FACTOR_NAMES) == len(shapes.FACTOR_SIZES) == 5
    assert np.prod(shapes.FACTOR_SIZES) == shapes.NUM_IMAGES == 737_280


def test_render_gives_binary_float32_images_of_image_shape():
    images = shapes.render(random_indices(200, seed=0))
    assert images.shape == (200,) + shapes.IMAGE_SHAPE
    assert images.dtype == np.float32
    assert set(np.unique(images)) == {0.0, 1.0}


def test_render_is_deterministic_and_independent_of_batch_company():
    indices = random_indices(100, seed=1)
    together = shapes.render(indices)
    np.testing.assert_array_equal(together, shapes.render(indices))
    np.testing.assert_array_equal(together[17:18], shapes.render(indices[17:18]))


@pytest.mark.parametrize("factor", range(5), ids=shapes.FACTOR_NAMES)
def test_stepping_any_single_factor_changes_the_image(factor):
    base = render_one(*BASE)
    for step in (-1, 1):
        moved = list(BASE)
        moved[factor] = (moved[factor] + step) % shapes.FACTOR_SIZES[factor]
        changed = np.sum(render_one(*moved) != base)
        assert changed > 0, f"{shapes.FACTOR_NAMES[factor]} step {step} left the image unchanged"


def test_the_three_shapes_at_the_same_pose_differ_in_many_pixels():
    for scale, orientation in itertools.product(range(6), (0, 7)):
        images = [render_one(s, scale, orientation, 16, 16) for s in (SQUARE, ELLIPSE, HEART)]
        for a, b in itertools.combinations(range(3), 2):
            differ = np.sum(images[a] != images[b])
            assert differ >= 15, f"shapes {a}, {b} at scale {scale} differ in only {differ} px"


@pytest.mark.parametrize("scale", range(6))
def test_square_and_ellipse_areas_are_within_10_percent_of_analytic_areas(scale):
    half = shapes.HALF_SIZE * shapes.SCALES[scale]
    want = {SQUARE: (2 * half) ** 2, ELLIPSE: np.pi * half * (shapes.ELLIPSE_MINOR * half)}
    # Average over orientations so pixel-boundary luck at one pose does not dominate.
    got = {s: mean_area([[s, scale, o, 16, 16] for o in range(40)]) for s in want}
    for shape, area in want.items():
        assert abs(got[shape] / area - 1) < 0.1, f"shape {shape}: {got[shape]} px vs {area:.1f}"
    ratio, want_ratio = got[SQUARE] / got[ELLIPSE], want[SQUARE] / want[ELLIPSE]
    assert abs(ratio / want_ratio - 1) < 0.1, f"square/ellipse area {ratio:.3f} vs {want_ratio:.3f}"


def test_every_shape_at_smallest_scale_has_at_least_30_pixels_at_every_orientation_and_corner():
    poses = itertools.product((SQUARE, ELLIPSE, HEART), range(40), (0, 31), (0, 31))
    areas = shapes.render(np.array([[s, 0, o, x, y] for s, o, x, y in poses])).sum(axis=(1, 2, 3))
    assert areas.min() >= 30, f"smallest shape has {areas.min()} px"


def test_larger_scale_gives_strictly_more_pixels_for_every_shape():
    for shape, orientation in itertools.product((SQUARE, ELLIPSE, HEART), (0, 5, 13)):
        images = shapes.render(np.array([[shape, s, orientation, 16, 16] for s in range(6)]))
        areas = images.sum(axis=(1, 2, 3))
        assert np.all(np.diff(areas) > 0), f"shape {shape}, orientation {orientation}: {areas}"


def test_pos_x_moves_centre_of_mass_right_and_pos_y_moves_it_down():
    for shape in (SQUARE, ELLIPSE, HEART):
        along_x = [centre_of_mass(render_one(shape, 2, 7, p, 16)) for p in range(32)]
        along_y = [centre_of_mass(render_one(shape, 2, 7, 16, p)) for p in range(32)]
        assert np.all(np.diff([x for x, _ in along_x]) > 0), f"shape {shape}: x not increasing"
        assert np.all(np.diff([y for _, y in along_y]) > 0), f"shape {shape}: y not increasing"
        assert np.ptp([y for _, y in along_x]) < 0.5, f"shape {shape}: pos_x moved y"
        assert np.ptp([x for x, _ in along_y]) < 0.5, f"shape {shape}: pos_y moved x"


def test_square_centre_of_mass_is_at_margin_plus_position_times_span():
    span = shapes.IMAGE_SHAPE[0] - 2 * shapes.MARGIN
    for pos_x, pos_y in ((0, 0), (31, 0), (9, 25), (31, 31)):
        got = centre_of_mass(render_one(SQUARE, 0, 0, pos_x, pos_y))
        want = (shapes.MARGIN + span * pos_x / 31, shapes.MARGIN + span * pos_y / 31)
        np.testing.assert_allclose(got, want, atol=0.5, err_msg=f"pos ({pos_x}, {pos_y})")


def test_square_turned_a_quarter_turn_matches_orientation_zero():
    poses = list(itertools.product(range(6), (0, 13, 31), (0, 22, 31)))
    unturned = shapes.render(np.array([[SQUARE, s, 0, x, y] for s, x, y in poses]))
    turned = shapes.render(np.array([[SQUARE, s, QUARTER_TURN, x, y] for s, x, y in poses]))
    # Identical in exact arithmetic; allow a few rounding ties on pixel centres.
    differ = np.sum(unturned != turned, axis=(1, 2, 3))
    assert differ.max() <= 4, f"up to {differ.max()} pixels differ after a quarter turn"


def test_heart_at_orientation_zero_is_upright_with_lobes_above_the_point():
    image = render_one(HEART, 5, 0, 16, 16)
    widths = image.sum(axis=1)
    rows = np.nonzero(widths)[0]
    _, centre_y = centre_of_mass(image)
    widest_row = rows[np.argmax(widths[rows])]
    assert widest_row + 0.5 < centre_y, "widest row should be above the centre (lobes on top)"
    assert widths[rows[-1]] <= 3, f"bottom row should be the point, has {widths[rows[-1]]} px"


def test_factor_indices_round_trip_with_ravel_multi_index():
    flat = np.random.default_rng(2).integers(0, shapes.NUM_IMAGES, 1000)
    indices = shapes.factor_indices(flat)
    assert indices.shape == (1000, 5)
    np.testing.assert_array_equal(np.ravel_multi_index(indices.T, shapes.FACTOR_SIZES), flat)
    assert np.all(indices < np.array(shapes.FACTOR_SIZES))


def test_splits_are_disjoint_cover_all_images_and_are_deterministic_per_seed():
    splits = shapes.splits(0)
    assert len(splits["test"]) == shapes.NUM_TEST
    assert len(splits["validation"]) == shapes.NUM_VALIDATION
    assert len(splits["train"]) == shapes.NUM_IMAGES - shapes.NUM_TEST - shapes.NUM_VALIDATION
    for a, b in itertools.combinations(("train", "validation", "test"), 2):
        assert not np.intersect1d(splits[a], splits[b]).size, f"{a} and {b} overlap"
    np.testing.assert_array_equal(
        np.sort(np.concatenate(list(splits.values()))), np.arange(shapes.NUM_IMAGES)
    )
    for name, indices in shapes.splits(0).items():
        np.testing.assert_array_equal(indices, splits[name], err_msg=name)


def test_splits_differ_between_seeds():
    test0, test1 = shapes.splits(0)["test"], shapes.splits(1)["test"]
    overlap = np.intersect1d(test0, test1).size
    assert overlap < 0.1 * shapes.NUM_TEST, f"seeds 0 and 1 share {overlap} test images"


def test_batch_returns_images_and_int32_factors_of_the_flat_indices():
    flat = np.array([0, 5, shapes.NUM_IMAGES - 1])
    out = shapes.batch(flat)
    assert out["image"].shape == (3,) + shapes.IMAGE_SHAPE and out["image"].dtype == np.float32
    assert out["factors"].dtype == np.int32
    np.testing.assert_array_equal(out["factors"], shapes.factor_indices(flat))
    np.testing.assert_array_equal(out["image"], shapes.render(shapes.factor_indices(flat)))


def test_train_batches_resumed_at_step_k_equal_a_straight_run_from_its_kth_batch():
    straight = list(itertools.islice(shapes.train_batches(seed=3, batch_size=8), 6))
    resumed = list(itertools.islice(shapes.train_batches(seed=3, batch_size=8, start_step=4), 2))
    for want, got in zip(straight[4:], resumed):
        np.testing.assert_array_equal(got["factors"], want["factors"])
        np.testing.assert_array_equal(got["image"], want["image"])
    assert not np.array_equal(straight[0]["factors"], straight[1]["factors"])


def flat_indices(batches) -> np.ndarray:
    """The flat image indices of the factors in `batches`, concatenated: [N]."""
    factors = np.concatenate([b["factors"] for b in batches])
    return np.ravel_multi_index(factors.T, shapes.FACTOR_SIZES)


def test_train_batches_draw_only_from_the_train_split_never_validation_or_test():
    splits = shapes.splits(shapes.SPLIT_SEED)
    drawn = flat_indices(itertools.islice(shapes.train_batches(seed=4, batch_size=256), 8))
    assert np.isin(drawn, splits["train"]).all()
    assert not np.intersect1d(drawn, splits["validation"]).size


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_eval_batches_are_the_split_asked_for_in_order_with_a_smaller_last_batch(split):
    batches = list(shapes.eval_batches(split, batch_size=32, num_examples=100))
    assert [len(b["image"]) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(
        flat_indices(batches), shapes.splits(shapes.SPLIT_SEED)[split][:100]
    )


def test_eval_batches_default_to_the_whole_split():
    sizes = [len(b["factors"]) for b in shapes.eval_batches("test", batch_size=4096)]
    assert sizes == [4096, 4096, shapes.NUM_TEST - 8192]


def test_eval_batches_reject_more_examples_than_the_split_holds():
    with pytest.raises(ValueError, match="num_examples"):
        shapes.eval_batches("validation", batch_size=8, num_examples=shapes.NUM_VALIDATION + 1)


def test_eval_batches_of_an_unknown_split_name_the_three_splits():
    with pytest.raises(ValueError, match="'valid' is not one of: train, validation, test"):
        shapes.eval_batches("valid", batch_size=8)


def test_data_eval_batches_of_shapes_serve_exactly_the_split_asked_for():
    config = get_config()
    config.eval.batch_size = 50
    for split in ("train", "validation", "test"):
        batches = data.eval_batches(config, split, 100)
        want = shapes.splits(shapes.SPLIT_SEED)[split][:100]
        np.testing.assert_array_equal(flat_indices(batches), want, err_msg=split)
        np.testing.assert_array_equal(flat_indices(batches), want, err_msg=f"{split}, 2nd pass")
    with pytest.raises(ValueError, match="is not one of: train, validation, test"):
        data.eval_batches(config, "val", 100)


def test_image_shape_of_shapes_is_64x64x1():
    config = get_config()
    assert data.image_shape(config.dataset) == (64, 64, 1)


def test_render_jax_gives_the_same_pixels_as_the_numpy_renderer():
    indices = random_indices(3000, seed=5)
    on_device = jax.jit(shapes.render_jax)(jnp.asarray(indices, jnp.int32))
    np.testing.assert_array_equal(np.asarray(on_device), shapes.render(indices))


def test_device_train_batches_are_each_seeds_host_batches_stacked_from_the_start_step():
    mesh = parallel.make_mesh()
    sharding = parallel.points_batch_sharded(mesh)
    device = itertools.islice(shapes.device_train_batches([7, 3], 8, 2, sharding), 2)
    host = {seed: list(itertools.islice(shapes.train_batches(seed, 8, 2), 2)) for seed in (7, 3)}
    for step, batch in enumerate(device):
        assert batch["image"].shape == (2, 8) + shapes.IMAGE_SHAPE
        assert batch["image"].sharding.is_equivalent_to(sharding, 5)
        np.testing.assert_array_equal(batch["image"][0], host[7][step]["image"])
        np.testing.assert_array_equal(batch["image"][1], host[3][step]["image"])
    assert not np.array_equal(host[7][0]["factors"], host[3][0]["factors"])


def test_train_batches_of_a_process_are_its_block_of_the_global_batch():
    whole = next(shapes.train_batches(seed=2, batch_size=8))
    second = next(shapes.train_batches(seed=2, batch_size=8, process=(1, 2)))
    np.testing.assert_array_equal(second["factors"], whole["factors"][4:])
    np.testing.assert_array_equal(second["image"], whole["image"][4:])
