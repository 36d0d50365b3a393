"""End-to-end training on the built-in shapes data: outputs on disk, resume, CLI overrides."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from experiments import base, shapes
from vae_jax import checkpoints, data, evaluation, optim, parallel, train, workdir_lock
from vae_jax import config as config_lib
from vae_jax.config import ConfigError, validate
from vae_jax.data import shapes as shapes_data
from vae_jax.evaluation import likelihood
from vae_jax.models import make_model
from vae_jax.writers import read_metrics

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**train_overrides):
    config = shapes.get_config("tiny")
    config.train.update(train_overrides)
    return config


@pytest.mark.slow
def test_training_writes_config_checkpoints_metrics_events_and_figures(tmp_path):
    config = tiny_config(num_steps=20, log_every=5, eval_every=10, checkpoint_every=10)
    train.train_and_evaluate(config, tmp_path)

    assert json.loads((tmp_path / "config.json").read_text())["model"]["latent_dim"] == 4
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]

    records = read_metrics(tmp_path)
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == [5, 10, 15, 20]
    assert {"loss", "elbo", "rate", "distortion", "grad_norm", "images_per_s"} <= set(records[0])
    assert [r["step"] for r in records if "validation/elbo" in r] == [10, 20]

    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert {"loss", "elbo", "validation/elbo"} <= set(events.Tags()["scalars"])
    assert {"reconstructions", "samples"} <= set(events.Tags()["images"])
    loss_events = events.Scalars("loss")
    assert [e.step for e in loss_events] == [5, 10, 15, 20]
    logged = [e.value for e in loss_events]
    np.testing.assert_allclose(logged, [r["loss"] for r in records if "loss" in r], rtol=1e-6)
    samples = events.Images("samples")[-1]
    assert samples.step == 20 and samples.encoded_image_string[:4] == b"\x89PNG"
    png = Image.open(io.BytesIO(samples.encoded_image_string))
    assert png.size == (samples.width, samples.height) and png.mode == "L"

    for name in ["reconstructions", "samples"]:
        image = Image.open(tmp_path / "figures" / f"step_0000020_{name}.png")
        assert image.size[0] > 64 * 8 and image.mode == "L"


@pytest.mark.slow
def test_loss_decreases_on_shapes(tmp_path):
    config = tiny_config(num_steps=60, log_every=10, eval_every=60, checkpoint_every=60)
    train.train_and_evaluate(config, tmp_path)
    losses = [r["loss"] for r in read_metrics(tmp_path) if "loss" in r]
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("method", base.METHODS)
def test_every_objective_trains_and_resumes_exactly(tmp_path, method):
    """The `:tiny,<method>` config: a run resumed from its step-4 checkpoint ends with the state
    (parameters, averages, optimizer moments, FactorVAE's discriminator) of the straight run,
    and the regularisers are logged. FactorVAE's run, whose checkpoint holds more than β-VAE's
    (the discriminator), is also analysed: analysis reads only the parameters."""

    def config(num_steps):
        config = shapes.get_config(f"tiny,{method}")
        config.train.update(
            num_steps=num_steps, log_every=4, eval_every=100, checkpoint_every=4, keep_checkpoints=2
        )
        return config

    straight = train.train_and_evaluate(config(8), tmp_path / "straight")
    # An interrupted run: the straight run's directory as it was after step 4.
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / checkpoints.CHECKPOINT_DIR / "8")
    resumed = train.train_and_evaluate(config(8), tmp_path / "resumed")
    assert int(resumed.step) == int(straight.step) == 8
    assert type(resumed) is type(straight)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(straight), jax.tree.leaves(resumed)
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))
    logged = [record for record in read_metrics(tmp_path / "resumed") if "loss" in record][-1]
    expected = {
        "beta_tcvae": {"tc", "mutual_info", "dimwise_kl"},
        "factor_vae": {"tc", "discriminator_loss", "discriminator_accuracy"},
        "dip_vae_i": {"dip_off_diagonal", "dip_diagonal"},
        "dip_vae_ii": {"dip_off_diagonal", "dip_diagonal"},
    }.get(method, set())
    assert expected <= set(logged) and all(np.isfinite(logged[k]) for k in expected)
    if method == "factor_vae":
        results = evaluation.analyze(tmp_path / "resumed")
        assert np.isfinite(results["elbo"]) and "mig" in results


@pytest.mark.slow
def test_finished_run_exits_at_once_without_writing(tmp_path):
    config = tiny_config(num_steps=10, log_every=5, eval_every=10, checkpoint_every=10)
    train.train_and_evaluate(config, tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text()
    state = train.train_and_evaluate(config, tmp_path)
    assert int(state.step) == 10
    assert (tmp_path / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model.likelihood", "poisson", "model.likelihood='poisson' is not valid: must be one of"),
        ("model.posterior", "cholesky", "model.posterior='cholesky'"),
        ("objective.beta", -1.0, "objective.beta=-1.0"),
        ("model.latent_dim", 0, "model.latent_dim=0"),
        ("dataset.image_size", 60, "dataset.image_size=60 is not valid: the 4 stride-2 stages"),
        ("train.batch_size", 0, "train.batch_size=0"),
    ],
)
def test_invalid_config_values_fail_naming_the_key(key, value, message):
    config = tiny_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(config)


def run_launch(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_command_line_overrides_reach_the_run(tmp_path):
    result = run_launch(
        "--config=experiments/shapes.py:tiny",
        f"--workdir={tmp_path}",
        "--config.train.num_steps=5",
        "--config.model.latent_dim=4",
        "--config.model.posterior=full",
        "--config.objective.beta=8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 4
    assert saved["model"]["posterior"] == "full"
    assert saved["objective"]["beta"] == 8.0
    assert "Done. Checkpoints:" in result.stderr


@pytest.mark.slow
def test_misspelled_config_key_fails_naming_it(tmp_path):
    result = run_launch(
        "--config=experiments/shapes.py:tiny", f"--workdir={tmp_path}", "--config.model.latnt_dim=4"
    )
    assert result.returncode != 0
    assert "latnt_dim" in result.stderr
    assert not (tmp_path / "config.json").exists()


@pytest.mark.slow
def test_resuming_with_a_different_config_is_refused_unless_allowed(tmp_path):
    config = tiny_config(num_steps=4, eval_every=4, checkpoint_every=4)
    train.train_and_evaluate(config, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    config.objective.beta = 8.0
    config.train.num_steps = 6
    with pytest.raises(ConfigError, match=r"objective.beta: 4.0 -> 8.0.*--allow_config_change"):
        train.train_and_evaluate(config, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4"]

    assert int(train.train_and_evaluate(config, tmp_path, allow_config_change=True).step) == 6
    assert json.loads((tmp_path / "config.json").read_text())["objective"]["beta"] == 8.0


def test_a_workdir_with_another_runs_config_but_no_checkpoint_is_refused(tmp_path):
    config = tiny_config(num_steps=4)
    config_lib.write_config(tmp_path, config)  # e.g. a run killed before its first checkpoint
    config.model.latent_dim = 7
    with pytest.raises(ConfigError, match=r"model.latent_dim: 4 -> 7"):
        train.train_and_evaluate(config, tmp_path)


def params_of(state: train.TrainState) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]


def one_step(config, images: np.ndarray):
    """(params before, state after, metrics) of one train step on `images` [B, 64, 64, 1]."""
    mesh = parallel.make_mesh()
    model = make_model(config.model, (64, 64, 1))
    optimizer = optim.make_optimizer(config.train)
    state = train.create_train_state(
        model,
        optimizer,
        (64, 64, 1),
        jax.random.key(0),
        mesh,
        config.objective.kind,
    )
    before = params_of(state)
    step = train.make_train_step(model, optimizer, config, mesh)
    weights = train.point_weights(config, config.train.learning_rate)
    states, keys, weights = train.stack_points([(state, jax.random.key(1), weights)])
    batch = parallel.put_process_batch({"image": images[None]}, mesh)  # one point
    state, metrics = step(states, batch, keys, weights)
    return before, train.point_of(state, 0), jax.device_get(train.point_of(metrics, 0))


@pytest.mark.slow
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_a_non_finite_batch_skips_the_update_but_advances_the_step(bad_value):
    images = np.zeros((8, 64, 64, 1), np.float32)
    images[3, 10, 10, 0] = bad_value
    before, state, metrics = one_step(tiny_config(), images)
    assert metrics["skipped"] == 1.0 and not np.isfinite(metrics["loss"])
    assert int(state.step) == 1
    for old, new in zip(before, params_of(state)):
        np.testing.assert_array_equal(old, new)
    adam_counts = [leaf for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim == 0]
    assert adam_counts and all(int(count) == 0 for count in adam_counts)  # no schedule step


@pytest.mark.slow
@pytest.mark.parametrize("skip_grad_norm, skipped", [(None, 0.0), (1e6, 0.0), (1e-3, 1.0)])
def test_skip_grad_norm_skips_updates_with_larger_gradients(skip_grad_norm, skipped):
    config = tiny_config(skip_grad_norm=skip_grad_norm)
    images = (np.random.default_rng(0).random((8, 64, 64, 1)) < 0.5).astype(np.float32)
    before, state, metrics = one_step(config, images)
    assert metrics["grad_norm"] > 1e-3 and metrics["skipped"] == skipped
    changed = any(not np.array_equal(old, new) for old, new in zip(before, params_of(state)))
    assert changed == (skipped == 0.0)


@pytest.mark.parametrize(
    "before, flags, expected",
    [(0, [0, 0, 1], 1), (2, [1, 1], 4), (5, [1, 0, 1, 1], 2), (3, [0], 0), (0, [1, 0, 0], 0)],
)
def test_consecutive_skips_counts_the_trailing_run(before, flags, expected):
    assert train._consecutive_skips(before, np.asarray(flags, np.float32)) == expected


@pytest.mark.slow
def test_nan_batches_are_skipped_and_counted_and_training_goes_on(tmp_path, monkeypatch):
    real_batches = shapes_data.device_train_batches

    def batches_with_nans(seeds, batch_size, start_step, sharding):
        batches = real_batches(seeds, batch_size, start_step, sharding)
        for step, batch in enumerate(batches, start=start_step):
            if step in (2, 3, 7):
                batch = {"image": batch["image"] * np.nan}
            yield batch

    monkeypatch.setattr(shapes_data, "device_train_batches", batches_with_nans)
    config = tiny_config(num_steps=10, log_every=5, eval_every=10, checkpoint_every=10)
    state = train.train_and_evaluate(config, tmp_path)
    assert int(state.step) == 10
    assert all(np.all(np.isfinite(leaf)) for leaf in params_of(state))
    records = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert [r["skipped_steps"] for r in records] == [2, 1]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in records)


@pytest.mark.slow
def test_too_many_consecutive_skips_stop_the_run_naming_the_last_checkpoint(tmp_path):
    config = tiny_config(num_steps=8, log_every=2, eval_every=8, checkpoint_every=2)
    train.train_and_evaluate(config, tmp_path)  # checkpoints 2 .. 8
    config.train.update(num_steps=20, skip_grad_norm=1e-6, max_consecutive_skips=4)
    with pytest.raises(train.TrainingDivergedError, match=r"up to step 12.* checkpoint, step 10 "):
        train.train_and_evaluate(config, tmp_path, allow_config_change=True)


# A failed orbax restore leaves an asyncio future that reports "Event loop is closed".
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = tiny_config(num_steps=10, log_every=5, eval_every=10, checkpoint_every=5)
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    workdir = tmp_path / "damaged"
    train.train_and_evaluate(config, workdir)
    for data_file in (workdir / "checkpoints" / "10").rglob("d/*"):
        data_file.write_bytes(data_file.read_bytes()[:10])  # truncated

    resumed = train.train_and_evaluate(config, workdir)
    assert int(resumed.step) == 10
    for a, b in zip(params_of(straight), params_of(resumed)):
        np.testing.assert_array_equal(a, b)
    assert [p.name.split(".")[0] for p in (workdir / "checkpoints_damaged").iterdir()] == ["10"]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10", "5"]


@pytest.mark.slow
def test_training_longer_on_resume_updates_config_json(tmp_path):
    config = tiny_config(num_steps=4, eval_every=4, checkpoint_every=4)
    train.train_and_evaluate(config, tmp_path)
    config.train.num_steps = 6
    assert int(train.train_and_evaluate(config, tmp_path).step) == 6
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 6


@pytest.mark.slow
def test_resuming_drops_the_metrics_of_steps_after_the_checkpoint(tmp_path):
    config = tiny_config(num_steps=8, log_every=2, eval_every=8, checkpoint_every=4)
    train.train_and_evaluate(config, tmp_path)
    straight = read_metrics(tmp_path)
    checkpoints.set_aside(tmp_path, [8])  # as if killed after logging step 8, before saving it
    train.train_and_evaluate(config, tmp_path)
    resumed = read_metrics(tmp_path)
    assert [r["step"] for r in resumed] == [r["step"] for r in straight]
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(a.get("loss", 0.0), b.get("loss", 0.0), rtol=1e-6)


@pytest.mark.slow
def test_the_padded_last_eval_batch_is_dropped_from_the_evaluation():
    """40 examples in batches of 16 (the last padded from 8 to 16) give the 40 per-example rates
    of one batch of 40 (analytic KL: equal to float precision) and a close mean distortion."""
    config = tiny_config()
    config.eval.num_examples = 40
    mesh = parallel.make_mesh()
    model = make_model(config.model, (64, 64, 1))
    optimizer = optim.make_optimizer(config.train)
    state = train.create_train_state(model, optimizer, (64, 64, 1), jax.random.key(0), mesh)
    elbo_fn = likelihood.make_elbo_fn(model, mesh)
    key = jax.random.key(3)

    def per_example(batch_size):
        config.eval.batch_size = batch_size
        batches = data.eval_batches(config)
        return likelihood.elbo_per_example(elbo_fn, state.params, batches, key, mesh, batch_size)

    padded, whole = per_example(16), per_example(40)
    assert padded["rate"].shape == whole["rate"].shape == (40,)
    assert padded["factors"].shape == (40, 5)
    np.testing.assert_allclose(padded["rate"], whole["rate"], rtol=1e-6)
    # The distortion depends on the sampled z, drawn per batch: close, not equal.
    np.testing.assert_allclose(padded["distortion"].mean(), whole["distortion"].mean(), rtol=0.05)


@pytest.mark.parametrize("decay", [0.0, 0.05, 0.999])
def test_parameter_average_moves_by_its_decay_formula(decay):
    """After the first update (step t = 0) the EMA is d·θ_0 + (1 − d)·θ_1 with
    d = min(decay, (1 + t) / (10 + t)) = min(decay, 0.1), in float64 numpy."""
    images = np.random.default_rng(0).uniform(size=(8, 64, 64, 1)).astype(np.float32)
    before, state, _ = one_step(tiny_config(ema_decay=decay), images)
    d = min(decay, 0.1)
    after = params_of(state)
    ema = [np.asarray(leaf) for leaf in jax.tree.leaves(state.ema_params)]
    for b, a, e in zip(before, after, ema):
        expected = d * b.astype(np.float64) + (1 - d) * a.astype(np.float64)
        np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(b, a) for b, a in zip(before, after))


def test_a_skipped_update_leaves_the_parameter_average_alone():
    images = np.zeros((8, 64, 64, 1), np.float32)
    images[0, 0, 0, 0] = np.nan
    before, state, metrics = one_step(tiny_config(), images)
    assert metrics["skipped"] == 1.0
    for b, e in zip(before, jax.tree.leaves(state.ema_params)):
        np.testing.assert_array_equal(b, np.asarray(e))


@pytest.mark.slow
def test_best_checkpoint_is_the_highest_validation_elbo_and_keep_every_keeps_its_steps(
    tmp_path,
):
    config = tiny_config(
        num_steps=12,
        log_every=2,
        eval_every=2,
        checkpoint_every=2,
        keep_checkpoints=1,
        keep_every=4,
    )
    train.train_and_evaluate(config, tmp_path)
    evals = {
        r["step"]: r["validation/elbo"] for r in read_metrics(tmp_path) if "validation/elbo" in r
    }
    best_step = max(evals, key=evals.get)
    best = json.loads((tmp_path / "checkpoint_best" / "best.json").read_text())
    assert best["step"] == best_step and best["validation/elbo"] == pytest.approx(evals[best_step])
    assert sorted(
        int(p.name) for p in (tmp_path / "checkpoint_best").iterdir() if p.name.isdigit()
    ) == [best_step]
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [4, 8, 12]


def objective_config(**objective):
    config = tiny_config()
    config.objective.update(objective)
    return config


BATCH = np.random.default_rng(7).uniform(size=(8, 64, 64, 1)).astype(np.float32)


@pytest.mark.parametrize(
    "objective, expected_loss",
    [
        # Linear KL warm-up at step 0: weight 0, the loss is the distortion alone.
        ({"beta": 4.0, "kl_warmup_steps": 10}, lambda m, k: m["distortion"]),
        # Capacity C(0) = 0: distortion + γ·|rate − 0|.
        (
            {"kind": "annealed", "capacity": 25.0, "capacity_steps": 100, "capacity_gamma": 3.0},
            lambda m, k: m["distortion"] + 3 * m["rate"],
        ),
        # Free bits far above any dimension's KL: β · k · λ.
        ({"beta": 2.0, "free_bits": 50.0}, lambda m, k: m["distortion"] + 2.0 * k * 50.0),
        # Plain β-VAE.
        ({"beta": 0.5}, lambda m, k: m["distortion"] + 0.5 * m["rate"]),
        # The disentangling methods: an unweighted ELBO plus their weighted regulariser.
        (
            {"kind": "beta_tcvae", "beta": 6.0, "dataset_size": 1000},
            lambda m, k: m["distortion"] + m["rate"] + 5.0 * m["tc"],
        ),
        (
            {"kind": "factor_vae", "factor_vae_gamma": 30.0},
            lambda m, k: m["distortion"] + m["rate"] + 30.0 * m["tc"],
        ),
        (
            {"kind": "dip_vae_ii", "dip_lambda_od": 3.0, "dip_lambda_d": 7.0},
            lambda m, k: (
                m["distortion"] + m["rate"] + 3.0 * m["dip_off_diagonal"] + 7.0 * m["dip_diagonal"]
            ),
        ),
    ],
    ids=["warmup", "annealed", "free_bits", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae_ii"],
)
def test_the_jitted_step_optimises_the_objective_its_formula_states(objective, expected_loss):
    _, _, metrics = one_step(objective_config(**objective), BATCH)
    metrics = {name: float(value) for name, value in metrics.items()}
    assert metrics.get("tc", 1.0) != 0.0  # a regulariser that vanished would pass unseen
    np.testing.assert_allclose(metrics["loss"], expected_loss(metrics, 4), rtol=1e-5)


def test_iwae_training_minimises_the_negative_importance_weighted_bound():
    """objective.iwae_samples=5: the step's loss is −mean_B log (1/5) Σ_k w_k, recomputed here
    in float64 from the model's log weights at the step's key."""
    config = objective_config(iwae_samples=5)
    _, _, metrics = one_step(config, BATCH)
    model = make_model(config.model, (64, 64, 1))
    state = train.create_train_state(
        model,
        optim.make_optimizer(config.train),
        (64, 64, 1),
        jax.random.key(0),
        parallel.make_mesh(),
    )
    step_key = jax.random.fold_in(jax.random.key(1), 0)
    log_px, log_pz, log_qz = (
        np.asarray(t, np.float64)
        for t in likelihood.make_log_weight_terms_fn(model)(state.params, BATCH, step_key, 5)
    )
    log_w = log_px + log_pz - log_qz  # [5, B]
    peak = log_w.max(0)
    bound = peak + np.log(np.mean(np.exp(log_w - peak), axis=0))
    np.testing.assert_allclose(float(metrics["loss"]), -bound.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["elbo"]), log_w.mean(), rtol=1e-5)
    assert float(metrics["iwae_bound"]) > float(metrics["elbo"])


@pytest.mark.slow
def test_a_larger_beta_gives_a_lower_rate(tmp_path):
    """Same seed and data, 40 steps: β = 8 squeezes the validation rate below β = 0.5's."""
    rates = {}
    for beta in (0.5, 8.0):
        config = tiny_config(num_steps=40, log_every=40, eval_every=40, checkpoint_every=40)
        config.objective.beta = beta
        workdir = tmp_path / f"beta={beta}"
        train.train_and_evaluate(config, workdir)
        rates[beta] = [r for r in read_metrics(workdir) if "validation/rate" in r][-1]
    assert rates[8.0]["validation/rate"] < rates[0.5]["validation/rate"], rates


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, train_overrides",
    [({"posterior": "full"}, {}), ({}, {"compute_dtype": "bfloat16"})],
)
def test_full_covariance_and_bfloat16_training_stay_finite(tmp_path, model, train_overrides):
    config = tiny_config(num_steps=20, log_every=10, eval_every=20, checkpoint_every=20)
    config.model.update(model)
    config.train.update(train_overrides)
    state = train.train_and_evaluate(config, tmp_path)
    records = read_metrics(tmp_path)
    assert all(np.isfinite(r["loss"]) and r["skipped_steps"] == 0 for r in records if "loss" in r)
    assert np.isfinite([r["validation/elbo"] for r in records if "validation/elbo" in r]).all()
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state.params))


def test_a_second_run_in_a_held_workdir_is_refused_naming_the_holder(tmp_path):
    held = workdir_lock.hold(tmp_path)
    refused = pytest.raises(workdir_lock.WorkdirLockedError, match=str(os.getpid()))
    with held, refused:
        train.train_and_evaluate(tiny_config(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, lock released
