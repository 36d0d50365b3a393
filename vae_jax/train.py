"""Training: the train state, jitted train/eval steps, and the loop that feeds them.

The loop only moves data, calls the steps and hands numbers to the writer; the maths lives in
objectives.py and the steps. Re-running with the same workdir resumes from the latest checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import struct

from vae_jax import checkpoints, data, figures
from vae_jax import config as config_lib
from vae_jax import objectives as O
from vae_jax.metrics import MetricsWriter
from vae_jax.models import VAE, make_model


@struct.dataclass
class TrainState:
    """Everything a checkpoint holds. The step's PRNG key is derived from (seed, step)."""

    step: jax.Array
    params: dict
    opt_state: optax.OptState


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with an optional linear warm-up, cosine decay and global-norm gradient clipping."""
    t = train_config
    if t.lr_schedule == "cosine":
        learning_rate = optax.warmup_cosine_decay_schedule(
            0.0, t.learning_rate, t.warmup_steps, max(t.num_steps, t.warmup_steps + 1)
        )
    elif t.warmup_steps > 0:
        learning_rate = optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps)
    else:
        learning_rate = t.learning_rate
    adam = optax.adam(learning_rate)
    if t.grad_clip_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), adam)


def create_train_state(
    model: VAE,
    optimizer: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    key: jax.Array,
) -> TrainState:
    """Fresh parameters (initialised on a batch of one) and optimizer state at step 0."""
    x = jnp.zeros((1,) + image_shape, jnp.float32)
    params = jax.jit(model.init)(key, x, key)
    return TrainState(
        step=jnp.asarray(0, jnp.int32), params=params, opt_state=optimizer.init(params)
    )


def make_train_step(
    model: VAE, optimizer: optax.GradientTransformation, objective_config: ml_collections.ConfigDict
) -> Callable:
    """Returns step(state, batch, key) -> (state, metrics), jitted with the state donated.

    The step's randomness is fold_in(key, state.step), so a resumed run repeats a straight run.
    """

    def step(state: TrainState, batch: data.Batch, key: jax.Array):
        x = batch["image"]
        step_key = jax.random.fold_in(key, state.step)

        def loss_fn(params):
            out = model.apply(params, x, step_key)
            terms = O.elbo_terms(out.posterior, model.prior, out.likelihood, x)
            return O.loss(terms, objective_config, state.step), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_state = TrainState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
        )
        metrics = dict(
            loss=loss,
            elbo=jnp.mean(terms.elbo),
            rate=jnp.mean(terms.rate),
            distortion=jnp.mean(terms.distortion),
            grad_norm=optax.tree.norm(grads),
        )
        return new_state, metrics

    return jax.jit(step, donate_argnums=0)


def make_eval_step(model: VAE) -> Callable:
    """Returns eval_step(params, batch, key) -> sums of elbo, rate, distortion over the batch."""

    def eval_step(params, batch: data.Batch, key: jax.Array):
        x = batch["image"]
        out = model.apply(params, x, key)
        terms = O.elbo_terms(out.posterior, model.prior, out.likelihood, x)
        return dict(
            elbo=jnp.sum(terms.elbo),
            rate=jnp.sum(terms.rate),
            distortion=jnp.sum(terms.distortion),
            count=jnp.asarray(x.shape[0], jnp.float32),
        )

    return jax.jit(eval_step)


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


def evaluate(eval_step: Callable, params, batches: Iterable[data.Batch], key: jax.Array) -> dict:
    """Mean test elbo / rate / distortion (nats per example) over one pass of `batches`."""
    totals = None
    for i, batch in enumerate(batches):
        sums = eval_step(params, {"image": batch["image"]}, jax.random.fold_in(key, i))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {f"test/{name}": float(value / count) for name, value in totals.items()}


def _mean_metrics(per_step: list[dict[str, jax.Array]]) -> dict[str, float]:
    """Averages each metric over the steps of a logging interval (one device-to-host copy)."""
    stacked = jax.device_get(jax.tree.map(lambda *values: jnp.stack(values), *per_step))
    return {name: float(np.mean(values)) for name, values in stacked.items()}


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainState:
    """Trains `config` in `workdir`, resuming from its latest checkpoint.

    Returns the final train state."""
    config_lib.validate(config)
    workdir = Path(workdir)
    image_shape = data.image_shape(config.dataset)
    manager = checkpoints.checkpoint_manager(workdir, config.train.keep_checkpoints)
    latest = manager.latest_step()
    if latest is not None and config_lib.check_resumable(
        checkpoints.read_config_dict(workdir), config
    ):
        checkpoints.write_config(workdir, config)  # e.g. a longer num_steps
    # Opening the data before anything compiles: missing data fails in seconds, not minutes.
    batches = data.train_batches(config, start_step=latest or 0)
    eval_data = data.eval_batches(config)

    model = make_model(config.model, image_shape)
    optimizer = make_optimizer(config.train)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    state = create_train_state(model, optimizer, image_shape, init_key)
    if latest is not None:
        state = checkpoints.restore(manager, latest, state)
        logging.info("Resumed from checkpoint at step %d in %s", latest, workdir)
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
    if latest is None:
        checkpoints.write_config(workdir, config)

    train_step = make_train_step(model, optimizer, config.objective)
    eval_step = make_eval_step(model)
    reconstruct, sample = make_figure_fns(model)
    writer = MetricsWriter(workdir)

    def evaluate_and_draw(step: int) -> None:
        metrics = evaluate(eval_step, state.params, eval_data, eval_key)
        if config.model.likelihood == "discretized_logistic":  # a likelihood of 8-bit data
            metrics["test/bits_per_dim"] = O.bits_per_dim(-metrics["test/elbo"], image_shape)
        writer.write_scalars(step, metrics)
        logging.info("step %d | %s", step, " | ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        inputs = next(iter(eval_data))["image"][: config.eval.num_figures]
        grids = {
            "reconstructions": figures.reconstruction_grid(
                inputs, np.asarray(reconstruct(state.params, inputs))
            ),
            "samples": figures.image_grid(
                np.asarray(sample(state.params, eval_key, config.eval.num_figures)), columns=8
            ),
        }
        writer.write_images(step, grids)
        for name, grid in grids.items():
            figures.save_png(grid, workdir / "figures" / f"step_{step:07d}_{name}.png")

    step = first_step = int(state.step)  # host copy: the loop waits on the device only to log
    pending_metrics = []
    interval_start, interval_first_step = time.perf_counter(), step
    while step < num_steps:
        state, metrics = train_step(state, {"image": next(batches)["image"]}, train_key)
        step += 1
        pending_metrics.append(metrics)
        if step % config.train.log_every == 0 or step == num_steps:
            means = _mean_metrics(pending_metrics)
            elapsed = time.perf_counter() - interval_start
            means["images_per_s"] = (step - interval_first_step) * config.train.batch_size / elapsed
            eta = (num_steps - step) * elapsed / (step - interval_first_step)
            writer.write_scalars(step, means)
            logging.info(
                "step %d/%d | loss %.2f | elbo %.2f | rate %.2f | distortion %.2f | grad_norm %.2f"
                " | %.0f img/s | ETA %s",
                step,
                num_steps,
                means["loss"],
                means["elbo"],
                means["rate"],
                means["distortion"],
                means["grad_norm"],
                means["images_per_s"],
                _format_duration(eta),
            )
            pending_metrics = []
        if step % config.train.eval_every == 0 or step == num_steps:
            evaluate_and_draw(step)
        if step % config.train.checkpoint_every == 0 or step == num_steps:
            checkpoints.save(manager, step, state)
        if step == first_step + 1:  # the first step compiles: time from its end
            jax.block_until_ready(metrics)
        if not pending_metrics or step == first_step + 1:  # leave eval, saving, compiling out
            interval_start, interval_first_step = time.perf_counter(), step
    manager.wait_until_finished()
    manager.close()
    writer.close()
    return state
