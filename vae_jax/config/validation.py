"""Config validation: every bad value fails at start, before any compilation, naming its key."""

from __future__ import annotations

import math
import numbers

import ml_collections

from vae_jax.data import IDX_DATASETS, shapes

MODEL_KINDS = ("conv", "mlp", "hierarchical", "ladder_mlp")
HIERARCHICAL_KINDS = ("hierarchical", "ladder_mlp")
POSTERIORS = ("diag", "full")
LIKELIHOODS = (
    "bernoulli",
    "gaussian",
    "gaussian_learned",
    "gaussian_optimal",
    "discretized_logistic",
    "discretized_mix_logistic",
)
OPTIMIZERS = ("adam", "adamax")
LR_SCHEDULES = ("constant", "cosine")
CROPS = ("center148", "nvae", "none")
COMPUTE_DTYPES = ("float32", "bfloat16")
OBJECTIVES = ("beta_vae", "annealed", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")
TC_ESTIMATORS = ("mss", "mws")
# vae_jax.evaluation.disentanglement's DCI_PREDICTORS and LOGISTIC_SOLVERS (not imported: the
# evaluation package imports this one).
DCI_PREDICTORS = ("gradient_boosting", "extra_trees")
LOGISTIC_SOLVERS = ("liblinear", "lbfgs")


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key, the value and what is allowed."""


def _require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is not valid: {allowed}")


def _one_of(config: ml_collections.ConfigDict, key: str, choices: tuple[str, ...]) -> None:
    value = _lookup(config, key)
    _require(value in choices, key, value, "must be one of " + ", ".join(choices))


def _lookup(config: ml_collections.ConfigDict, key: str):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def _is_number(value, integer: bool = False) -> bool:
    """An int, or (unless `integer`) a finite float; True and False are not numbers here."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return not integer and isinstance(value, numbers.Real) and math.isfinite(value)


def _at_least(
    config: ml_collections.ConfigDict,
    key: str,
    minimum: float,
    *,
    integer: bool = False,
    optional: bool = False,
) -> None:
    value = _lookup(config, key)
    if optional and value is None:
        return
    allowed = f"must be an integer >= {minimum}" if integer else f"must be >= {minimum} and finite"
    _require(
        _is_number(value, integer) and value >= minimum,
        key,
        value,
        allowed + (" (or unset)" if optional else ""),
    )


def _positive(config: ml_collections.ConfigDict, key: str, *, optional: bool = False) -> None:
    value = _lookup(config, key)
    if optional and value is None:
        return
    allowed = "must be > 0 and finite" + (" (or unset)" if optional else "")
    _require(_is_number(value) and value > 0, key, value, allowed)


def _check_dataset_name(name) -> None:
    """shapes, image_folder, or a TFDS builder name (with an optional /config and :version)."""
    if name in ("shapes", "image_folder"):
        return
    # tensorflow_datasets alone does not import TensorFlow; looking a builder up is fast.
    import tensorflow_datasets as tfds

    allowed = (
        "use shapes, image_folder or a TFDS dataset name "
        "(celeb_a, mnist, fashion_mnist, binarized_mnist, cifar10, ...)"
    )
    _require(isinstance(name, str), "dataset.name", name, allowed)
    try:
        dataset_name, _ = tfds.core.naming.parse_builder_name_kwargs(name)  # e.g. cmaterdb/bangla
        # A community dataset (namespace:name) can only be looked up over the network, on loading.
        if not dataset_name.namespace:
            tfds.builder_cls(dataset_name.name)
    except ValueError:  # a malformed name, or tfds's DatasetNotFoundError
        raise ConfigError(f"dataset.name={name!r} is not valid: {allowed}") from None


def _check_objective(config: ml_collections.ConfigDict) -> None:
    """The keys each objective.kind needs, and no capacity where it would be ignored."""
    objective = config.objective
    annealed = objective.kind == "annealed"
    _require(
        annealed == (objective.capacity is not None),
        "objective.capacity",
        objective.capacity,
        "objective.kind='annealed' needs a capacity in nats (e.g. 25.0), and only it reads one "
        f"(objective.kind={objective.kind!r})",
    )
    _require(
        objective.kind in ("beta_vae", "beta_tcvae") or objective.beta == 1.0,
        "objective.beta",
        objective.beta,
        f"objective.kind={objective.kind!r} does not read β: leave it at 1 (β weighs the KL of "
        "beta_vae and the TC of beta_tcvae)",
    )
    needs_diag = ("beta_tcvae", "dip_vae_i", "dip_vae_ii")
    _require(
        objective.kind not in needs_diag or config.model.posterior == "diag",
        "objective.kind",
        objective.kind,
        f"{', '.join(needs_diag)} need model.posterior='diag'",
    )
    _require(
        objective.kind != "beta_tcvae" or config.train.batch_size >= 2,
        "train.batch_size",
        config.train.batch_size,
        "beta_tcvae estimates the aggregate posterior on the batch: use at least 2",
    )
    _require(
        objective.dataset_size is None
        or (
            _is_number(objective.dataset_size, integer=True)
            and objective.dataset_size >= config.train.batch_size
        ),
        "objective.dataset_size",
        objective.dataset_size,
        f"must be an integer >= train.batch_size={config.train.batch_size}, or unset for the "
        "train split's size",
    )


def _check_sizes(config: ml_collections.ConfigDict, key: str) -> None:
    sizes = _lookup(config, key)
    _require(
        isinstance(sizes, (tuple, list))
        and len(sizes) > 0
        and all(_is_number(n, integer=True) and n >= 1 for n in sizes),
        key,
        sizes,
        "must be a non-empty sequence of integers >= 1, e.g. (32, 64)",
    )


def _check_hierarchical(config: ml_collections.ConfigDict) -> None:
    """The hierarchical model's resolutions, blocks and channels agree with each other and the
    image size."""
    m = config.model
    for key in ("model.resolutions", "model.blocks", "model.channels"):
        _check_sizes(config, key)
    resolutions = tuple(m.resolutions)
    _require(
        resolutions[0] == config.dataset.image_size,
        "model.resolutions",
        resolutions,
        f"must start at the image size dataset.image_size={config.dataset.image_size}",
    )
    _require(
        all(a > b and a % b == 0 for a, b in zip(resolutions, resolutions[1:])),
        "model.resolutions",
        resolutions,
        "must descend, each dividing the one before (e.g. (32, 16, 8, 4, 1))",
    )
    for key in ("model.blocks", "model.channels"):
        value = tuple(_lookup(config, key))
        _require(
            len(value) == len(resolutions),
            key,
            value,
            f"needs one entry per resolution of model.resolutions={resolutions}",
        )
    _at_least(config, "model.latent_channels", 1, integer=True)
    ratio = m.bottleneck_ratio
    _require(
        _is_number(ratio) and 0 < ratio <= 1,
        "model.bottleneck_ratio",
        ratio,
        "must be in (0, 1]: the blocks' inner width over the stream's (VDVAE: 0.25)",
    )


def _check_flat_only(config: ml_collections.ConfigDict) -> None:
    """What needs a one-group model's single code vector: full posteriors, free bits per
    dimension, and the disentangling objectives' regularisers on q(z|x)."""
    kind = config.model.kind
    _require(
        config.model.posterior == "diag",
        "model.posterior",
        config.model.posterior,
        f"model.kind={kind!r} has diagonal posteriors only: use diag",
    )
    _require(
        config.objective.kind in ("beta_vae", "annealed"),
        "objective.kind",
        config.objective.kind,
        f"model.kind={kind!r} trains with beta_vae or annealed (the disentangling regularisers "
        "are defined on one code vector)",
    )
    _require(
        config.objective.free_bits == 0,
        "objective.free_bits",
        config.objective.free_bits,
        f"model.kind={kind!r}: free bits are per dimension of one code vector; leave it at 0",
    )


def _check_iwae(config: ml_collections.ConfigDict) -> None:
    """objective.iwae_samples > 1 trains on the IWAE bound: the plain bound, nothing reweighted."""
    objective = config.objective
    _at_least(config, "objective.iwae_samples", 1, integer=True)
    if objective.iwae_samples == 1:
        return
    plain = (
        objective.kind == "beta_vae"
        and objective.beta == 1.0
        and objective.kl_warmup_steps == 0
        and objective.free_bits == 0
    )
    _require(
        plain,
        "objective.iwae_samples",
        objective.iwae_samples,
        "the IWAE bound trains as it is: it needs objective.kind='beta_vae' with beta=1, "
        "kl_warmup_steps=0 and free_bits=0 (or set iwae_samples=1)",
    )


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first invalid value found: a wrong type, a value out of range,
    an unknown name, or an unknown dataset."""
    _check_dataset_name(config.dataset.name)
    _one_of(config, "dataset.crop", CROPS)
    _one_of(config, "model.kind", MODEL_KINDS)
    _one_of(config, "model.posterior", POSTERIORS)
    _one_of(config, "model.likelihood", LIKELIHOODS)
    _one_of(config, "train.lr_schedule", LR_SCHEDULES)
    _one_of(config, "train.optimizer", OPTIMIZERS)
    _one_of(config, "train.compute_dtype", COMPUTE_DTYPES)
    _one_of(config, "objective.kind", OBJECTIVES)
    _one_of(config, "objective.tc_estimator", TC_ESTIMATORS)
    for key in ("dataset.random_flip", "dataset.dynamic_binarization", "dataset.cache"):
        value = _lookup(config, key)
        _require(isinstance(value, bool), key, value, "must be True or False")
    for key in (
        "dataset.image_size",
        "dataset.shuffle_buffer",
        "model.latent_dim",
        "train.batch_size",
        "train.num_steps",
        "train.max_consecutive_skips",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "eval.batch_size",
        "eval.iwae_examples",
        "eval.iwae_samples",
        "eval.iwae_chunk",
        "eval.num_figures",
        "model.mixture_components",
    ):
        _at_least(config, key, 1, integer=True)
    for key in (
        "train.schedule_steps",
        "train.keep_every",
        "eval.num_examples",
        "eval.analysis_examples",
    ):
        _at_least(config, key, 1, integer=True, optional=True)
    _at_least(config, "eval.factor_score_points", 2, integer=True, optional=True)
    _at_least(config, "eval.factor_metric_points", 10, integer=True, optional=True)
    _one_of(config, "eval.dci_predictor", DCI_PREDICTORS)
    _one_of(config, "eval.logistic_solver", LOGISTIC_SOLVERS)
    _at_least(config, "eval.fid_samples", 0, integer=True, optional=True)
    temperatures = config.eval.fid_temperatures
    _require(
        isinstance(temperatures, (tuple, list))
        and len(temperatures) > 0
        and all(isinstance(t, (int, float)) and 0 < t < math.inf for t in temperatures),
        "eval.fid_temperatures",
        temperatures,
        "must be a non-empty tuple of positive temperatures, e.g. (1.0,) or (0.7, 1.0)",
    )
    for key in (
        "seed",
        "objective.kl_warmup_steps",
        "objective.capacity_steps",
        "train.warmup_steps",
    ):
        _at_least(config, key, 0, integer=True)
    decay = config.train.ema_decay
    _require(
        _is_number(decay) and 0 <= decay < 1,
        "train.ema_decay",
        decay,
        "must be in [0, 1): 0.999 averages about the last 1,000 steps, 0 turns averaging off",
    )
    for key in (
        "objective.beta",
        "objective.free_bits",
        "objective.capacity_gamma",
        "objective.factor_vae_gamma",
        "objective.dip_lambda_od",
        "objective.dip_lambda_d",
    ):
        _at_least(config, key, 0)
    _at_least(config, "objective.capacity", 0, optional=True)
    _check_objective(config)
    _positive(config, "train.learning_rate")
    _positive(config, "model.gaussian_scale")
    _positive(config, "train.grad_clip_norm", optional=True)
    _positive(config, "train.skip_grad_norm", optional=True)
    for key in ("model.channels", "model.hidden"):
        sizes = _lookup(config, key)
        _require(
            isinstance(sizes, (tuple, list))
            and all(_is_number(n, integer=True) and n >= 1 for n in sizes),
            key,
            sizes,
            "must be a sequence of integers >= 1, e.g. (32, 64)",
        )
    _check_iwae(config)
    if config.model.kind in HIERARCHICAL_KINDS:
        _check_flat_only(config)
    if config.model.kind == "hierarchical":
        _check_hierarchical(config)
    if config.model.kind == "ladder_mlp":
        _check_sizes(config, "model.latent_dims")
        _check_sizes(config, "model.hidden")
    if config.dataset.name == "image_folder":
        _require(
            bool(config.dataset.path),
            "dataset.path",
            config.dataset.path,
            "dataset.name='image_folder' needs --config.dataset.path=DIR, a folder of images",
        )
    _require(
        config.dataset.path is None or config.dataset.name in ("image_folder",) + IDX_DATASETS,
        "dataset.path",
        config.dataset.path,
        f"dataset.name={config.dataset.name!r} does not read it: dataset.path is the folder of "
        f"image_folder, or of the idx files of {', '.join(IDX_DATASETS)}; unset it",
    )
    if config.model.kind == "conv":
        stages = len(config.model.channels)
        _require(
            stages > 0,
            "model.channels",
            config.model.channels,
            "a conv model needs at least one stage",
        )
        size = config.dataset.image_size
        _require(
            size % 2**stages == 0,
            "dataset.image_size",
            size,
            f"the {stages} stride-2 stages of model.channels need a multiple of {2**stages}",
        )
    if config.dataset.name == "shapes":
        size = shapes.IMAGE_SHAPE[0]
        _require(
            config.dataset.image_size == size,
            "dataset.image_size",
            config.dataset.image_size,
            f"the shapes images are {size}x{size}; leave it at {size} (it sets the size of "
            "image_folder and TFDS images)",
        )
    channels = config.dataset.channels
    allowed = (shapes.IMAGE_SHAPE[-1],) if config.dataset.name == "shapes" else (1, 3)
    _require(
        channels is None or (_is_number(channels, integer=True) and channels in allowed),
        "dataset.channels",
        channels,
        f"must be {' or '.join(map(str, allowed))} for dataset.name={config.dataset.name!r}, "
        "or unset for the data's own",
    )
    if config.objective.free_bits > 0:
        _require(
            config.model.posterior == "diag",
            "objective.free_bits",
            config.objective.free_bits,
            "free bits are per latent dimension and need model.posterior='diag'",
        )
    analysis = config.eval.analysis_examples
    _require(
        analysis is None or analysis >= config.eval.iwae_examples,
        "eval.analysis_examples",
        analysis,
        f"must be unset or >= eval.iwae_examples={config.eval.iwae_examples}",
    )
