"""Training: the train state, the jitted train step, and the loop that feeds it and calls the
periodic evaluation (evaluation/likelihood.py, the same ELBO code as --mode=analyze).

The loop only moves data, calls the steps and hands numbers to the writer; the maths lives in
objectives.py and the steps. The steps run data-parallel over every device (parallel.py).
Re-running with the same workdir resumes from the latest checkpoint that restores.

Faults a long run survives: a non-finite loss or gradient (or, with train.skip_grad_norm, a
gradient norm above it) skips that update inside the jitted step, and train.max_consecutive_skips
skips in a row stop the run; SIGTERM / SIGINT (preemption, Ctrl-C) finish the current step,
save a checkpoint and return normally; a damaged latest checkpoint falls back to the one before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import struct

from vae_jax import (
    checkpoints,
    data,
    figures,
    optim,
    parallel,
    preemption,
    report,
    workdir_lock,
)
from vae_jax import config as config_lib
from vae_jax import objectives as O
from vae_jax.evaluation import likelihood
from vae_jax.models import VAE, make_model
from vae_jax.models.discriminator import Discriminator
from vae_jax.preemption import StoppedBySignal
from vae_jax.writers import MetricsWriter, drop_metrics_after

# The periodic evaluation's metrics, on the validation split, logged as validation/<name>.
EVAL_METRICS = ("elbo", "rate", "distortion")


class TrainingDivergedError(RuntimeError):
    """Too many consecutive updates were skipped for non-finite losses or gradients (or
    gradient norms above train.skip_grad_norm)."""


@struct.dataclass
class TrainState:
    """Everything a checkpoint holds. The step's PRNG key is derived from (seed, step).

    ema_params: the exponential moving average of params (train.ema_decay), which evaluation,
    figures and load_run use."""

    step: jax.Array
    params: dict
    ema_params: dict
    opt_state: optax.OptState


@struct.dataclass
class DiscriminatorState:
    """FactorVAE's discriminator parameters and the state of its own Adam."""

    params: dict
    opt_state: optax.OptState


@struct.dataclass
class FactorVaeTrainState(TrainState):
    """The train state of objective.kind="factor_vae": the VAE's and the discriminator's."""

    discriminator: DiscriminatorState


def ema_decay(step: jax.Array, decay: float) -> jax.Array:
    """min(decay, (1 + t) / (10 + t)) at step t: short averages early, when the first
    parameters are far from the later ones, then `decay` (0.999: about 1,000 steps)."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def create_train_state(
    model: VAE,
    optimizer: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    key: jax.Array,
    mesh: jax.sharding.Mesh,
    objective_kind: str = "beta_vae",
) -> TrainState:
    """Fresh parameters (initialised on a batch of one) and optimizer state at step 0,
    replicated over the mesh; a FactorVaeTrainState for objective_kind "factor_vae"."""

    def init(key):
        params = model.init(key, jnp.zeros((1,) + image_shape, jnp.float32), key)
        state = TrainState(
            step=jnp.asarray(0, jnp.int32),
            params=params,
            ema_params=params,
            opt_state=optimizer.init(params),
        )
        if objective_kind != "factor_vae":
            return state
        codes = jnp.zeros((1, model.latent_dim), jnp.float32)
        discriminator_params = Discriminator().init(jax.random.fold_in(key, 1), codes)
        discriminator = DiscriminatorState(
            params=discriminator_params,
            opt_state=optim.discriminator_optimizer().init(discriminator_params),
        )
        return FactorVaeTrainState(**vars(state), discriminator=discriminator)

    return jax.jit(init, out_shardings=parallel.replicated(mesh))(key)


def make_regularizers(config: ml_collections.ConfigDict) -> Callable:
    """regularizers(out, discriminator_params) -> {name: scalar}: the batch regularisers of
    objective.kind (objectives.regularizer_penalty weights them into the loss; all are logged)."""
    objective = config.objective
    if objective.kind == "beta_tcvae":
        batch_size = config.train.batch_size
        if objective.tc_estimator == "mss":
            log_weights = O.mss_log_weights(batch_size, objective.dataset_size)
        else:
            log_weights = O.mws_log_weights(batch_size)
        return lambda out, _: O.tc_decomposition(out.z, out.posterior, log_weights)
    if objective.kind in ("dip_vae_i", "dip_vae_ii"):
        return lambda out, _: O.dip_terms(out.posterior, objective.kind)
    if objective.kind == "factor_vae":
        return lambda out, params: {"tc": O.discriminator_tc(Discriminator().apply(params, out.z))}
    return lambda out, _: {}


def discriminator_update(
    state: DiscriminatorState, z: jax.Array, key: jax.Array
) -> tuple[DiscriminatorState, dict[str, jax.Array]]:
    """One Adam step of FactorVAE's discriminator on codes z [B, k] (held fixed) against their
    dimension-wise permutation; returns the new state and its loss, accuracy and gradient norm
    (before the step)."""
    z = jax.lax.stop_gradient(z)
    permuted = O.permute_dims(key, z)

    def loss_fn(params):
        logits = Discriminator().apply(params, jnp.concatenate([z, permuted]))
        return O.discriminator_loss(logits[: len(z)], logits[len(z) :])

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optim.discriminator_optimizer().update(grads, state.opt_state)
    new_state = DiscriminatorState(optax.apply_updates(state.params, updates), opt_state)
    metrics = {
        "discriminator_loss": loss,
        "discriminator_accuracy": accuracy,
        "discriminator_grad_norm": optax.tree.norm(grads),
    }
    return new_state, metrics


def make_train_step(
    model: VAE,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> Callable:
    """Returns step(state, batch, key) -> (state, metrics), jitted with the state donated, the
    batch split over the mesh's "data" axis and state and metrics replicated.

    The step's randomness is fold_in(key, state.step), so a resumed run repeats a straight run.
    An update is skipped (params and optimizer state kept, so the learning-rate schedule does
    not advance either; the step and with it the data and PRNG key do) when the loss or a
    gradient is not finite, or the gradient norm exceeds config.train.skip_grad_norm;
    metrics["skipped"] is then 1. The EMA of the parameters moves only on applied updates.
    """
    skip_grad_norm = config.train.skip_grad_norm
    decay = config.train.ema_decay
    regularizers = make_regularizers(config)
    factor_vae = config.objective.kind == "factor_vae"

    def step(state: TrainState, batch: data.Batch, key: jax.Array):
        x = batch["image"]
        step_key = jax.random.fold_in(key, state.step)
        discriminator_params = state.discriminator.params if factor_vae else None

        def loss_fn(params):
            out = model.apply(params, x, step_key)
            terms = O.elbo_terms(out.posterior, model.prior, out.likelihood, x)
            values = regularizers(out, discriminator_params)
            return O.loss(terms, config.objective, state.step, values), (terms, values, out.z)

        (loss, (terms, values, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        apply = jnp.isfinite(loss) & jnp.isfinite(grad_norm)  # a NaN/inf anywhere: norm not finite
        if skip_grad_norm is not None:
            apply = apply & (grad_norm <= skip_grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay(state.step, decay)
        ema_params = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema_params, params)
        new_state = state.replace(params=params, ema_params=ema_params, opt_state=opt_state)
        metrics = dict(
            loss=loss,
            elbo=jnp.mean(terms.elbo),
            rate=jnp.mean(terms.rate),
            distortion=jnp.mean(terms.distortion),
            grad_norm=grad_norm,
            **values,
        )
        if factor_vae:
            permute_key = jax.random.fold_in(step_key, 1)
            discriminator, discriminator_metrics = discriminator_update(
                state.discriminator, z, permute_key
            )
            apply = (
                apply
                & jnp.isfinite(discriminator_metrics["discriminator_loss"])
                & jnp.isfinite(discriminator_metrics["discriminator_grad_norm"])
            )
            new_state = new_state.replace(discriminator=discriminator)
            metrics.update(discriminator_metrics)

        # A skipped update keeps every parameter and optimizer state; only the step moves on.
        new_state = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_state, state)
        metrics["skipped"] = 1.0 - apply.astype(jnp.float32)
        return new_state.replace(step=state.step + 1), metrics

    replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def make_figure_fns(model: VAE) -> tuple[Callable, Callable]:
    """Jitted reconstruct(params, x) -> mean image at the posterior mean, and
    sample(params, key, n) -> mean images of n codes from the prior."""

    def reconstruct(params, x):
        posterior = model.apply(params, x, method=VAE.encode)
        return model.apply(params, posterior.mean, method=VAE.decode).mean()

    def sample(params, key, n: int):
        z = model.prior.sample(key, (n,))
        return model.apply(params, z, method=VAE.decode).mean()

    return jax.jit(reconstruct), jax.jit(sample, static_argnums=2)


def _interval_metrics(
    per_step: list[dict[str, jax.Array]],
) -> tuple[dict[str, float], np.ndarray]:
    """Means of each metric over the applied (not skipped) steps of a logging interval, whose
    losses are finite, and the per-step skip flags [steps]; one device-to-host copy."""
    stacked = jax.device_get(jax.tree.map(lambda *values: jnp.stack(values), *per_step))
    skipped = stacked.pop("skipped")
    applied = skipped == 0
    means = {
        name: float(np.mean(values[applied])) if applied.any() else float("nan")
        for name, values in stacked.items()
    }
    return means, skipped


def is_time(step: int, every: int, num_steps: int) -> bool:
    """Whether a periodic action (log, eval, checkpoint) every `every` steps happens after
    `step`: at its multiples and at the last step."""
    return step % every == 0 or step == num_steps


def _format_metrics(metrics: dict[str, float]) -> str:
    """ "elbo -104.12 | rate 11.90 | ..." in the metric table's labels and formats."""
    return " | ".join(
        f"{report.label(key)} {report.format_metric(key, metrics[key])}"
        for key in report.in_table_order(metrics)
    )


def _resolve(config: ml_collections.ConfigDict, workdir: Path) -> ml_collections.ConfigDict:
    """A copy of `config` with the values a run fixes at its start and records in config.json:
    train.schedule_steps, dataset.channels and (beta_tcvae) objective.dataset_size, each as
    given, else as the workdir's config.json has it (a resumed run keeps them), else num_steps,
    the channels found in the data (so load_run never needs the data to know the image shape)
    and the train split's size."""
    saved = {}
    if (workdir / config_lib.CONFIG_FILE).exists():
        saved = config_lib.flatten(config_lib.read_config_dict(workdir))
    fixed = {}
    if config.train.schedule_steps is None:
        schedule = saved.get("train.schedule_steps") or config.train.num_steps
        if config.train.num_steps > schedule and config.train.lr_schedule == "cosine":
            logging.warning(
                "train.num_steps=%d is past this run's learning-rate schedule "
                "(train.schedule_steps=%d, fixed at its start): the cosine rate stays 0 after "
                "step %d. To stretch the schedule (changing the rate of steps already taken), "
                "pass --config.train.schedule_steps=%d --allow_config_change.",
                config.train.num_steps,
                schedule,
                schedule,
                config.train.num_steps,
            )
        fixed["train.schedule_steps"] = schedule
    if config.dataset.channels is None:
        channels = saved.get("dataset.channels") or data.image_shape(config.dataset)[-1]
        fixed["dataset.channels"] = channels
    if config.objective.kind == "beta_tcvae" and config.objective.dataset_size is None:
        size = saved.get("objective.dataset_size") or data.num_train_examples(config.dataset)
        fixed["objective.dataset_size"] = size
    return config_lib.apply_overrides(config, fixed)


def _check_workdir(
    workdir: Path, config: ml_collections.ConfigDict, allow_config_change: bool
) -> None:
    """Refuses a workdir whose config.json belongs to a run with another config (see
    config.check_resumable), and rewrites config.json when resumable keys changed."""
    if not (workdir / config_lib.CONFIG_FILE).exists():
        return
    saved = config_lib.read_config_dict(workdir)
    changed = config_lib.check_resumable(saved, config, allow_change=allow_config_change)
    if changed and parallel.is_main_process():
        config_lib.write_config(workdir, config)  # e.g. a longer num_steps
    parallel.wait_for_all_processes("config.json")


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, allow_config_change: bool = False
) -> TrainState:
    """Trains `config` in `workdir`, resuming from its latest intact checkpoint.

    A workdir that holds a run with another config is refused (naming the keys that differ)
    unless `allow_config_change`, and one that another live process trains in is refused
    (workdir_lock.WorkdirLockedError). Returns the final train state. Raises StoppedBySignal after
    SIGTERM / SIGINT stopped the run with a checkpoint at the current step, and
    TrainingDivergedError after config.train.max_consecutive_skips skipped updates in a row."""
    config_lib.validate(config)
    workdir = Path(workdir)
    with workdir_lock.hold(workdir):
        return _train(config, workdir, allow_config_change)


def _train(
    config: ml_collections.ConfigDict, workdir: Path, allow_config_change: bool
) -> TrainState:
    """train_and_evaluate with the workdir held."""
    config = _resolve(config, workdir)
    mesh = parallel.make_mesh()
    parallel.check_divisible("train.batch_size", config.train.batch_size, mesh)
    parallel.check_divisible("eval.batch_size", config.eval.batch_size, mesh)
    _check_workdir(workdir, config, allow_config_change)
    image_shape = data.image_shape(config.dataset)
    # Opening the data before anything compiles (or any directory is made): missing data fails
    # in seconds, not minutes, and leaves nothing behind.
    batches = data.train_batches(config, start_step=checkpoints.latest_step(workdir) or 0)
    eval_data = data.eval_batches(config, "validation")
    manager = checkpoints.checkpoint_manager(
        workdir, config.train.keep_checkpoints, config.train.keep_every
    )
    latest = manager.latest_step()
    names = None if latest is None else checkpoints.saved_names(manager.directory / str(latest))
    if names is not None and "ema_params" not in names:
        raise checkpoints.CheckpointError(
            f"the checkpoints in {manager.directory} predate parameter averaging "
            "(train.ema_decay) and cannot be resumed by this version; analyse them with "
            "load_run(..., ema=False), or train in a new --workdir"
        )

    model = make_model(config.model, image_shape, config.train.compute_dtype)
    optimizer = optim.make_optimizer(config.train)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    state = create_train_state(model, optimizer, image_shape, init_key, mesh, config.objective.kind)
    restored = checkpoints.restore_latest(manager, state)
    if restored is not None:
        state, restored_step = restored
        logging.info("Resumed from checkpoint at step %d in %s", restored_step, workdir)
        if restored_step != latest:  # newer checkpoints are damaged: start from restored_step
            if parallel.is_main_process():
                damaged = [step for step in manager.all_steps() if step > restored_step]
                checkpoints.set_aside(workdir, damaged)
            parallel.wait_for_all_processes("set_aside")
            manager.reload()
            batches = data.train_batches(config, start_step=restored_step)
    num_steps = config.train.num_steps
    if int(state.step) >= num_steps:
        logging.info(
            "Run in %s already finished (step %d of %d); nothing to do.",
            workdir,
            int(state.step),
            num_steps,
        )
        manager.close()
        return state
    logging.info(
        "Data parallel over %d %s device(s) in %d process(es): %d examples per device per step",
        mesh.size,
        mesh.devices.flat[0].platform,
        jax.process_count(),
        config.train.batch_size // mesh.size,
    )
    main_process = parallel.is_main_process()
    if main_process and restored is None:
        config_lib.write_config(workdir, config)
    if main_process:  # records of steps after the checkpoint are about to be redone
        drop_metrics_after(workdir, int(state.step))

    train_step = make_train_step(model, optimizer, config, mesh)
    elbo_fn = likelihood.make_elbo_fn(model, mesh)
    reconstruct, sample = make_figure_fns(model)
    writer = MetricsWriter(workdir) if main_process else None
    best = checkpoints.read_best(workdir)

    def evaluate_and_draw(step: int) -> None:
        # Every process computes (the arrays span all of them); process 0 writes.
        nonlocal best
        params = state.ema_params
        values = likelihood.elbo_per_example(
            elbo_fn, params, eval_data, eval_key, mesh, config.eval.batch_size
        )
        metrics = {}
        for name in EVAL_METRICS:
            metrics.update(report.mean_with_error(f"validation/{name}", values[name]))
        if config.model.likelihood == "discretized_logistic":  # a likelihood of 8-bit data
            bits = O.bits_per_dim(-metrics["validation/elbo"], image_shape)
            metrics["validation/elbo_bits_per_dim"] = bits
        if best is None or metrics["validation/elbo"] > best["validation/elbo"]:
            checkpoints.save_best(workdir, step, state, metrics["validation/elbo"])
            best = checkpoints.read_best(workdir)
        inputs = next(iter(eval_data))["image"][: config.eval.num_figures]
        grids = {
            "reconstructions": figures.reconstruction_grid(
                inputs, np.asarray(reconstruct(params, inputs))
            ),
            "samples": figures.image_grid(
                np.asarray(sample(params, eval_key, config.eval.num_figures)), columns=8
            ),
        }
        if not main_process:
            return
        writer.write_scalars(step, metrics)
        shown = {k: v for k, v in metrics.items() if not k.endswith(("_se", "_n"))}
        logging.info("step %d | %s", step, _format_metrics(shown))
        writer.write_images(step, grids)
        for name, grid in grids.items():
            figures.save_png(grid, workdir / "figures" / f"step_{step:07d}_{name}.png")

    def log_interval(step: int, means: dict[str, float], seconds: float, steps: int) -> None:
        means["images_per_s"] = steps * config.train.batch_size / seconds
        if not main_process:
            return
        writer.write_scalars(step, means)
        eta = report.format_duration((num_steps - step) * seconds / steps)
        logging.info("step %d/%d | %s | ETA %s", step, num_steps, _format_metrics(means), eta)

    def diverged_message(consecutive_skips: int, step: int) -> str:
        return (
            f"the last {consecutive_skips} updates (up to step {step}) were skipped for a "
            "non-finite loss or gradient (or one above train.skip_grad_norm), reaching "
            f"train.max_consecutive_skips={config.train.max_consecutive_skips}. Skipped updates "
            f"never reach the parameters, so the last checkpoint, step {manager.latest_step()} in "
            f"{manager.directory}, is good: lower train.learning_rate or set "
            "train.grad_clip_norm, and resume from it with --allow_config_change"
        )

    train_inputs = parallel.prefetch_to_mesh(({"image": b["image"]} for b in batches), mesh)
    step = first_step = int(state.step)  # host copy: the loop waits on the device only to log
    last_saved = first_step
    consecutive_skips = 0
    pending_metrics = []
    interval_start, interval_first_step = time.perf_counter(), step
    try:
        with preemption.stop_requests() as stop_requests:
            while step < num_steps and not preemption.should_stop(step, stop_requests):
                state, metrics = train_step(state, next(train_inputs), train_key)
                step += 1
                pending_metrics.append(metrics)
                if is_time(step, config.train.log_every, num_steps):
                    means, skipped = _interval_metrics(pending_metrics)
                    means["skipped_steps"] = int(skipped.sum())
                    consecutive_skips = _consecutive_skips(consecutive_skips, skipped)
                    seconds = time.perf_counter() - interval_start
                    log_interval(step, means, seconds, step - interval_first_step)
                    pending_metrics = []
                    if consecutive_skips >= config.train.max_consecutive_skips:
                        manager.wait_until_finished()
                        raise TrainingDivergedError(diverged_message(consecutive_skips, step))
                if is_time(step, config.train.eval_every, num_steps):
                    evaluate_and_draw(step)
                if is_time(step, config.train.checkpoint_every, num_steps):
                    checkpoints.save(manager, step, state)
                    last_saved = step
                if step == first_step + 1:  # the first step compiles: time from its end
                    jax.block_until_ready(metrics)
                if not pending_metrics or step == first_step + 1:  # leave eval, saving, compiling
                    interval_start, interval_first_step = time.perf_counter(), step
            if stop_requests and last_saved != step:
                checkpoints.save(manager, step, state)
            manager.wait_until_finished()
    finally:
        manager.close()
        if writer is not None:
            writer.close()
    if stop_requests:
        raise StoppedBySignal(
            f"stopped by {stop_requests[0]} at step {step}; checkpoint saved in "
            f"{manager.directory}. Run the same command to resume."
        )
    return state


def _consecutive_skips(before: int, skipped: np.ndarray) -> int:
    """Skipped updates in a row at the end of an interval, given `before` in a row at its start
    and its per-step skip flags [steps]."""
    applied = np.flatnonzero(skipped == 0)
    return before + len(skipped) if len(applied) == 0 else len(skipped) - 1 - applied[-1]
