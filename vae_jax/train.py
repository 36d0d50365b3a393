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

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
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
from vae_jax.data import shapes
from vae_jax.evaluation import likelihood
from vae_jax.models import Model, make_model
from vae_jax.models.discriminator import Discriminator
from vae_jax.models.heads import EIGHT_BIT_LIKELIHOODS
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


INIT_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def create_train_state(
    model: Model,
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

    # Run once per point: compiled with XLA's backend optimisation off, which takes the shapes
    # model's initialisation from 7.4 s (compile) + 0.01 s (run) to 1.7 + 0.6 s on 2 CPU cores.
    init = jax.jit(init, out_shardings=parallel.replicated(mesh)).lower(key)
    return init.compile(INIT_COMPILER_OPTIONS)(key)


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


# The config keys in which the points of one vectorised group (train_points) may differ: scalars
# that the jitted step takes as arrays with a leading points axis. Points that differ in any
# other key (a shape, a code path, the data) train in separate groups.
VECTORIZED_KEYS = (
    "seed",
    "train.learning_rate",
    "objective.beta",
    "objective.capacity",
    "objective.capacity_gamma",
    "objective.factor_vae_gamma",
    "objective.dip_lambda_od",
    "objective.dip_lambda_d",
)


@struct.dataclass
class PointWeights:
    """One point's scalar settings as the train step reads them: its objective's weights and
    update_scale, its learning rate over the rate the group's optimizer was built with (Adam's
    update is proportional to the rate, so this is the point's own schedule)."""

    objective: O.ObjectiveWeights
    update_scale: jax.Array


def point_weights(config: ml_collections.ConfigDict, group_learning_rate: float) -> PointWeights:
    """PointWeights of `config` in a group whose optimizer has train.learning_rate
    `group_learning_rate` (update_scale is exactly 1 for the point it was built from)."""
    return PointWeights(
        objective=O.objective_weights(config.objective),
        update_scale=np.float32(config.train.learning_rate / group_learning_rate),
    )


def group_key(config: ml_collections.ConfigDict) -> str:
    """The config outside VECTORIZED_KEYS, as text: points with equal keys can train as one
    vectorised group."""
    flat = config_lib.flatten(config.to_dict())
    return repr(sorted((key, value) for key, value in flat.items() if key not in VECTORIZED_KEYS))


def stack_points(trees: list) -> object:
    """Stacks pytrees of equal structure along a new leading points axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def point_of(tree, index: int):
    """Point `index` of a pytree with a leading points axis."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def make_train_step(
    model: Model,
    optimizer: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> Callable:
    """Returns step(state, batch, key, weights) -> (state, metrics) over a leading points axis
    P: a TrainState, batch images [P, B, ...], keys [P] and PointWeights with leaves [P] give
    P updated states and metrics [P]. One run is P = 1. Jitted with the state donated; the points
    are split over the mesh's "points" axis, each point's batch (axis 1) over its "data" axis;
    the metrics are whole on every device.
    `config` gives everything outside VECTORIZED_KEYS (the group's).

    A point's randomness is fold_in(key, state.step), so a resumed run repeats a straight run.
    An update is skipped (params and optimizer state kept, so the learning-rate schedule does
    not advance either; the step and with it the data and PRNG key do) when the loss or a
    gradient is not finite, or the gradient norm exceeds config.train.skip_grad_norm;
    metrics["skipped"] is then 1. Points skip apart. The EMA of the parameters moves only on
    applied updates.
    """
    skip_grad_norm = config.train.skip_grad_norm
    iwae_samples = config.objective.iwae_samples
    decay = config.train.ema_decay
    regularizers = make_regularizers(config)
    factor_vae = config.objective.kind == "factor_vae"

    def gradients(state: TrainState, batch: data.Batch, key: jax.Array, weights: PointWeights):
        """One point's loss, (terms, logged values, z) and parameter gradients."""
        x = batch["image"]
        step_key = jax.random.fold_in(key, state.step)
        discriminator_params = state.discriminator.params if factor_vae else None

        def loss_fn(params):
            if iwae_samples > 1:
                out = model.apply(params, x, step_key, iwae_samples)  # over [S, B]
                log_px, log_pz, log_qz = out.log_weight_terms(x)
                bound = O.iwae_bound(log_px, log_pz, log_qz, axis=0)
                terms = O.ElboTerms(
                    rate=jnp.mean(log_qz - log_pz, axis=0),
                    distortion=-jnp.mean(log_px, axis=0),
                    elbo=jnp.mean(log_px + log_pz - log_qz, axis=0),
                )
                return -jnp.mean(bound), (terms, {"iwae_bound": jnp.mean(bound)}, None)
            out = model.apply(params, x, step_key)
            terms = out.elbo_terms(x)
            values = regularizers(out, discriminator_params)
            if len(model.group_sizes) > 1:
                rates = jnp.mean(O.group_rates(terms.rate_per_dim, model.group_sizes), axis=0)
                values.update({f"rate_group_{g}": rate for g, rate in enumerate(rates)})
            loss = O.loss(terms, weights.objective, state.step, values)
            return loss, (terms, values, out.z)

        return jax.value_and_grad(loss_fn, has_aux=True)(state.params)

    def update(state: TrainState, key: jax.Array, weights: PointWeights, loss, aux, grads):
        """One point's new state and metrics from its gradients."""
        terms, values, z = aux
        grad_norm = optax.tree.norm(grads)
        apply = jnp.isfinite(loss) & jnp.isfinite(grad_norm)  # a NaN/inf anywhere: norm not finite
        if skip_grad_norm is not None:
            apply = apply & (grad_norm <= skip_grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(lambda u: weights.update_scale * u, updates)
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
            permute_key = jax.random.fold_in(jax.random.fold_in(key, state.step), 1)
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

    def step(state, batch, key, weights):
        if key.shape[0] > 1:
            (loss, aux), grads = jax.vmap(gradients)(state, batch, key, weights)
        else:
            # One point (every run outside a vectorised sweep): its gradients without vmap. Under
            # vmap every dot gets a points dimension of size 1, and XLA:CPU then computes the
            # weight gradients transposed and copies them back (mnist MLP step +27 % since
            # c12ac9e). The update stays vmapped: it is elementwise, and on the squeezed state
            # XLA copied every EMA parameter once more instead of updating it in place.
            point = [jax.tree.map(lambda leaf: leaf[0], t) for t in (state, batch, key, weights)]
            (loss, aux), grads = jax.tree.map(lambda leaf: leaf[None], gradients(*point))
        return jax.vmap(update)(state, key, weights, loss, aux, grads)

    points, batches = parallel.points_sharded(mesh), parallel.points_batch_sharded(mesh)
    return jax.jit(
        step,
        in_shardings=(points, batches, points, points),
        out_shardings=(points, parallel.replicated(mesh)),
        donate_argnums=0,
    )


def make_figure_fns(model: Model) -> tuple[Callable, Callable]:
    """Jitted reconstruct(params, x) -> mean image at the posterior mean (every group's), and
    sample(params, key, n) -> mean images of n codes from the prior."""

    def reconstruct(params, x):
        groups = len(model.group_sizes)
        key = jax.random.key(0)  # unused: every group is at its posterior mean
        return model.apply(params, x, key, groups, method="reconstruct").mean()

    def sample(params, key, n: int):
        return model.apply(params, key, n, method="generate").mean()

    return jax.jit(reconstruct), jax.jit(sample, static_argnums=2)


def _interval_metrics(
    per_step: list[dict[str, jax.Array]],
) -> list[tuple[dict[str, float], np.ndarray]]:
    """For each point, from the steps' metrics [P] of a logging interval: the means of each
    metric over its applied (not skipped) steps, whose losses are finite, and its per-step skip
    flags [steps]; one device-to-host copy."""
    stacked = jax.device_get(jax.tree.map(lambda *values: jnp.stack(values), *per_step))
    skipped = stacked.pop("skipped")  # [steps, P]
    results = []
    for i in range(skipped.shape[1]):
        applied = skipped[:, i] == 0
        means = {
            name: float(np.mean(values[applied, i])) if applied.any() else float("nan")
            for name, values in stacked.items()
        }
        results.append((means, skipped[:, i]))
    return results


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
    return train_points([config], [workdir], allow_config_change)[0]


def train_points(
    configs: list[ml_collections.ConfigDict],
    workdirs: list[str | Path],
    allow_config_change: bool = False,
) -> list[TrainState]:
    """Trains P runs as one vectorised program: their configs may differ only in
    VECTORIZED_KEYS (group_key equal), and each writes its own workdir exactly as
    train_and_evaluate does. Points resumed at different steps train one step-group after
    another. Returns each point's final train state.

    A point whose updates are skipped train.max_consecutive_skips times in a row drops out (it
    is still computed, but no longer logged, evaluated or saved) and the others go on;
    TrainingDivergedError is raised at the end, naming every such point. SIGTERM / SIGINT save
    every point at the current step and raise StoppedBySignal.
    """
    if len({group_key(config) for config in configs}) > 1:
        raise ValueError(
            f"train_points: the configs differ outside VECTORIZED_KEYS {VECTORIZED_KEYS}; "
            "train them in separate calls (sweep.run_sweep groups them)"
        )
    for config in configs:
        config_lib.validate(config)
    workdirs = [Path(workdir) for workdir in workdirs]
    with contextlib.ExitStack() as locks:
        for workdir in workdirs:
            locks.enter_context(workdir_lock.hold(workdir))
        return _train_points(configs, workdirs, allow_config_change)


@dataclasses.dataclass
class _Point:
    """One run of a group: its config and workdir, what it reads and writes, and its state
    (unstacked) between step-groups."""

    config: ml_collections.ConfigDict
    workdir: Path
    eval_data: Iterable[data.Batch]
    manager: ocp.CheckpointManager
    state: TrainState | None = None
    writer: MetricsWriter | None = None
    best: dict | None = None
    consecutive_skips: int = 0
    diverged: str | None = None  # the reason it dropped out

    @property
    def keys(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(init, train, eval) keys from the point's seed."""
        return tuple(jax.random.split(jax.random.key(self.config.seed), 3))


def _open_point(config: ml_collections.ConfigDict, workdir: Path, allow_change: bool) -> _Point:
    """Checks `workdir` against `config` and opens the point's validation data and checkpoints,
    before anything compiles (or any directory is made): missing data fails in seconds."""
    _check_workdir(workdir, config, allow_change)
    eval_data = data.eval_batches(config, "validation")  # missing data: DataNotFoundError
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
    return _Point(config, workdir, eval_data, manager)


def _restore(point: _Point, fresh_state: TrainState) -> None:
    """Sets point.state to its latest intact checkpoint, or `fresh_state`; damaged newer
    checkpoints are set aside."""
    point.state = fresh_state
    latest = point.manager.latest_step()
    restored = checkpoints.restore_latest(point.manager, fresh_state)
    if restored is None:
        return
    point.state, restored_step = restored
    logging.info("Resumed from checkpoint at step %d in %s", restored_step, point.workdir)
    if restored_step != latest:  # newer checkpoints are damaged: start from restored_step
        if parallel.is_main_process():
            damaged = [step for step in point.manager.all_steps() if step > restored_step]
            checkpoints.set_aside(point.workdir, damaged)
        parallel.wait_for_all_processes("set_aside")
        point.manager.reload()


def _train_points(
    configs: list[ml_collections.ConfigDict], workdirs: list[Path], allow_config_change: bool
) -> list[TrainState]:
    """train_points with the workdirs held."""
    configs = [_resolve(config, workdir) for config, workdir in zip(configs, workdirs)]
    config = configs[0]  # everything outside VECTORIZED_KEYS
    mesh = parallel.make_mesh()  # one point's: evaluation, and the check below for any group
    parallel.check_divisible("train.batch_size", config.train.batch_size, mesh)
    parallel.check_divisible("eval.batch_size", config.eval.batch_size, mesh)
    image_shape = data.image_shape(config.dataset)
    points = [
        _open_point(point_config, workdir, allow_config_change)
        for point_config, workdir in zip(configs, workdirs)
    ]
    model = make_model(config.model, image_shape, config.train.compute_dtype)
    kind = config.objective.kind
    try:
        for point in points:
            optimizer = optim.make_optimizer(point.config.train)
            init_key = point.keys[0]
            _restore(point, create_train_state(model, optimizer, image_shape, init_key, mesh, kind))
        num_steps = config.train.num_steps
        for point in points:
            if int(point.state.step) >= num_steps:
                logging.info(
                    "Run in %s already finished (step %d of %d); nothing to do.",
                    point.workdir,
                    int(point.state.step),
                    num_steps,
                )
        for group in step_groups([p for p in points if int(p.state.step) < num_steps]):
            _train_group(group, model, image_shape, mesh)
    finally:
        for point in points:
            point.manager.close()
            if point.writer is not None:
                point.writer.close()
    diverged = [point.diverged for point in points if point.diverged]
    if diverged:
        raise TrainingDivergedError("; ".join(diverged))
    return [point.state for point in points]


def step_groups(points: list[_Point]) -> list[list[_Point]]:
    """`points` split into the groups that train as one program, in order of their step: equal
    steps and equal resolved configs outside VECTORIZED_KEYS (a resumed point keeps the
    train.schedule_steps of its config.json, which may differ from the others')."""
    groups: dict[tuple[int, str], list[_Point]] = {}
    for point in points:
        groups.setdefault((int(point.state.step), group_key(point.config)), []).append(point)
    return [groups[key] for key in sorted(groups)]


def group_batches(
    configs: list[ml_collections.ConfigDict], start_step: int, mesh: jax.sharding.Mesh
) -> Iterator[dict[str, jax.Array]]:
    """The training inputs of a group of points: each step's batches from start_step on, stacked
    {"image": [P, B, ...]} and split over the mesh as make_train_step takes them. Shapes are
    rendered on the devices; other data come from one host pipeline per seed (points with the
    same seed share theirs) and are copied ahead."""
    config = configs[0]
    seeds = [config.seed for config in configs]
    if config.dataset.name == "shapes":
        sharding = parallel.points_batch_sharded(mesh)
        return shapes.device_train_batches(seeds, config.train.batch_size, start_step, sharding)
    pipelines = {config.seed: data.train_batches(config, start_step) for config in configs}

    def stacked() -> Iterator[data.Batch]:
        while True:
            images = {seed: next(batches)["image"] for seed, batches in pipelines.items()}
            yield {"image": np.stack([images[seed] for seed in seeds])}

    return parallel.prefetch_to_mesh(stacked(), mesh)


def _train_group(
    points: list[_Point],
    model: Model,
    image_shape: tuple[int, int, int],
    eval_mesh: jax.sharding.Mesh,
) -> None:
    """Trains `points`, all at the same step and with equal resolved configs outside
    VECTORIZED_KEYS (step_groups), to train.num_steps as one vectorised program spread over the
    devices (parallel.make_mesh of the group), leaving each one's final state in point.state.
    The optimizer and its schedule are the first point's; the others scale its updates by their
    own learning rate (point_weights). Evaluation runs on `eval_mesh`, one point at a time."""
    config = points[0].config
    optimizer = optim.make_optimizer(config.train)
    mesh = parallel.make_mesh(len(points))
    train_step = make_train_step(model, optimizer, config, mesh)
    num_steps = config.train.num_steps
    main_process = parallel.is_main_process()
    for point in points:
        if main_process and point.manager.latest_step() is None:
            config_lib.write_config(point.workdir, point.config)
        if main_process:  # records of steps after the checkpoint are about to be redone
            drop_metrics_after(point.workdir, int(point.state.step))
        point.writer = MetricsWriter(point.workdir) if main_process else None
        point.best = checkpoints.read_best(point.workdir)
    logging.info(
        "Data parallel over %d %s device(s) in %d process(es): %d examples per device per "
        "step; %d run(s) in one program, spread over %d device group(s)",
        mesh.size,
        mesh.devices.flat[0].platform,
        jax.process_count(),
        config.train.batch_size // mesh.shape[parallel.DATA_AXIS],
        len(points),
        mesh.shape[parallel.POINTS_AXIS],
    )
    learning_rate = config.train.learning_rate
    weights = stack_points([point_weights(p.config, learning_rate) for p in points])
    train_keys = jnp.stack([point.keys[1] for point in points])
    state = jax.device_put(stack_points([p.state for p in points]), parallel.points_sharded(mesh))
    for point in points:
        point.state = None  # the stacked state is the live one
    elbo_fn = likelihood.make_elbo_fn(model, eval_mesh)
    reconstruct, sample = make_figure_fns(model)

    def active() -> list[tuple[int, _Point]]:
        return [(i, point) for i, point in enumerate(points) if point.diverged is None]

    def evaluate_and_draw(i: int, point: _Point, step: int) -> None:
        # Every process computes (the arrays span all of them); process 0 writes.
        params = point_of(state.ema_params, i)
        eval_key = point.keys[2]
        values = likelihood.elbo_per_example(
            elbo_fn, params, point.eval_data, eval_key, eval_mesh, config.eval.batch_size
        )
        metrics = {}
        for name in EVAL_METRICS:
            metrics.update(report.mean_with_error(f"validation/{name}", values[name]))
        if "rate_groups" in values:
            metrics.update(likelihood.group_rate_metrics(values["rate_groups"], "validation/"))
        if config.model.likelihood in EIGHT_BIT_LIKELIHOODS:
            bits = O.bits_per_dim(-metrics["validation/elbo"], image_shape)
            metrics["validation/elbo_bits_per_dim"] = bits
        if point.best is None or metrics["validation/elbo"] > point.best["validation/elbo"]:
            checkpoints.save_best(
                point.workdir, step, point_of(state, i), metrics["validation/elbo"]
            )
            point.best = checkpoints.read_best(point.workdir)
        inputs = next(iter(point.eval_data))["image"][: config.eval.num_figures]
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
        point.writer.write_scalars(step, metrics)
        shown = {k: v for k, v in metrics.items() if not k.endswith(("_se", "_n"))}
        logging.info("%sstep %d | %s", prefix(point), step, _format_metrics(shown))
        point.writer.write_images(step, grids)
        for name, grid in grids.items():
            figures.save_png(grid, point.workdir / "figures" / f"step_{step:07d}_{name}.png")

    def prefix(point: _Point) -> str:
        return "" if len(points) == 1 else f"{point.workdir.name} | "

    def log_interval(point: _Point, step: int, means: dict, seconds: float, steps: int) -> None:
        means["images_per_s"] = steps * config.train.batch_size / seconds
        if not main_process:
            return
        point.writer.write_scalars(step, means)
        eta = report.format_duration((num_steps - step) * seconds / steps)
        logging.info(
            "%sstep %d/%d | %s | ETA %s",
            prefix(point),
            step,
            num_steps,
            _format_metrics(means),
            eta,
        )

    def check_divergence(point: _Point, step: int) -> None:
        if point.consecutive_skips < config.train.max_consecutive_skips:
            return
        point.diverged = (
            f"{point.workdir}: the last {point.consecutive_skips} updates (up to step {step}) "
            "were skipped for a non-finite loss or gradient (or one above "
            "train.skip_grad_norm), reaching train.max_consecutive_skips="
            f"{config.train.max_consecutive_skips}. Skipped updates never reach the "
            f"parameters, so the last checkpoint, step {point.manager.latest_step()} in "
            f"{point.manager.directory}, is good: lower train.learning_rate or set "
            "train.grad_clip_norm, and resume from it with --allow_config_change"
        )
        if len(points) > 1:
            logging.error("Dropping a diverged run from the group: %s", point.diverged)

    def save_all(step: int) -> None:
        for i, point in active():
            checkpoints.save(point.manager, step, point_of(state, i))

    step = first_step = int(state.step[0])  # host copy: the loop waits on the device only to log
    train_inputs = group_batches([point.config for point in points], first_step, mesh)
    last_saved = first_step
    pending_metrics = []
    interval_start, interval_first_step = time.perf_counter(), step
    with preemption.stop_requests() as stop_requests:
        while step < num_steps and active() and not preemption.should_stop(step, stop_requests):
            state, metrics = train_step(state, next(train_inputs), train_keys, weights)
            step += 1
            pending_metrics.append(metrics)
            if is_time(step, config.train.log_every, num_steps):
                seconds = time.perf_counter() - interval_start
                per_point = _interval_metrics(pending_metrics)
                for i, point in active():
                    means, skipped = per_point[i]
                    means["skipped_steps"] = int(skipped.sum())
                    point.consecutive_skips = _consecutive_skips(point.consecutive_skips, skipped)
                    log_interval(point, step, means, seconds, step - interval_first_step)
                    check_divergence(point, step)
                pending_metrics = []
            if is_time(step, config.train.eval_every, num_steps):
                for i, point in active():
                    evaluate_and_draw(i, point, step)
            if is_time(step, config.train.checkpoint_every, num_steps):
                save_all(step)
                last_saved = step
            if step == first_step + 1:  # the first step compiles: time from its end
                jax.block_until_ready(metrics)
                logging.info(
                    "First step done in %.1f s, compiling included",
                    time.perf_counter() - interval_start,
                )
            if not pending_metrics or step == first_step + 1:  # leave eval, saving, compiling
                interval_start, interval_first_step = time.perf_counter(), step
        if stop_requests and last_saved != step:
            save_all(step)
        for point in points:
            point.manager.wait_until_finished()
    for i, point in enumerate(points):
        point.state = point_of(state, i)
    if stop_requests:
        raise StoppedBySignal(
            f"stopped by {stop_requests[0]} at step {step}; checkpoint saved in "
            f"{', '.join(str(p.manager.directory) for p in points)}. Run the same command to "
            "resume."
        )


def _consecutive_skips(before: int, skipped: np.ndarray) -> int:
    """Skipped updates in a row at the end of an interval, given `before` in a row at its start
    and its per-step skip flags [steps]."""
    applied = np.flatnonzero(skipped == 0)
    return before + len(skipped) if len(applied) == 0 else len(skipped) - 1 - applied[-1]
