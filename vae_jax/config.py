"""Config validation: every bad value fails at start, before any compilation, naming its key."""

from __future__ import annotations

import json

import ml_collections

MODEL_KINDS = ("conv", "mlp")
POSTERIORS = ("diag", "full")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned", "discretized_logistic")
LR_SCHEDULES = ("constant", "cosine")
CROPS = ("center148", "nvae", "none")


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


def _at_least(config: ml_collections.ConfigDict, key: str, minimum: float) -> None:
    value = _lookup(config, key)
    _require(value is not None and value >= minimum, key, value, f"must be >= {minimum}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first invalid value found."""
    _one_of(config, "dataset.crop", CROPS)
    _one_of(config, "model.kind", MODEL_KINDS)
    _one_of(config, "model.posterior", POSTERIORS)
    _one_of(config, "model.likelihood", LIKELIHOODS)
    _one_of(config, "train.lr_schedule", LR_SCHEDULES)
    for key in (
        "model.latent_dim",
        "train.batch_size",
        "train.num_steps",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "eval.batch_size",
        "eval.iwae_samples",
        "eval.iwae_examples",
        "eval.iwae_chunk",
        "eval.num_figures",
        "dataset.image_size",
    ):
        _at_least(config, key, 1)
    if config.dataset.name == "image_folder":
        _require(
            bool(config.dataset.path),
            "dataset.path",
            config.dataset.path,
            "dataset.name='image_folder' needs --config.dataset.path=DIR, a folder of images",
        )
    _at_least(config, "dataset.shuffle_buffer", 1)
    for key in (
        "objective.beta",
        "objective.free_bits",
        "objective.kl_warmup_steps",
        "objective.capacity_gamma",
        "train.warmup_steps",
    ):
        _at_least(config, key, 0)
    _require(
        config.train.learning_rate > 0,
        "train.learning_rate",
        config.train.learning_rate,
        "must be > 0",
    )
    _require(
        config.model.gaussian_scale > 0,
        "model.gaussian_scale",
        config.model.gaussian_scale,
        "must be > 0",
    )
    _require(
        all(c >= 1 for c in config.model.channels),
        "model.channels",
        config.model.channels,
        "every entry must be >= 1",
    )
    if config.model.kind == "conv":
        stages = len(config.model.channels)
        size = config.dataset.image_size
        _require(
            size % 2**stages == 0,
            "dataset.image_size",
            size,
            f"the {stages} stride-2 stages of model.channels need a multiple of {2**stages}",
        )
    if config.objective.free_bits > 0:
        _require(
            config.model.posterior == "diag",
            "objective.free_bits",
            config.objective.free_bits,
            "free bits are per latent dimension and need model.posterior='diag'",
        )
    if config.objective.capacity is not None:
        _at_least(config, "objective.capacity", 0)
    _at_least(config, "objective.capacity_steps", 0)
    _require(
        len(config.model.channels) > 0 or config.model.kind == "mlp",
        "model.channels",
        config.model.channels,
        "a conv model needs at least one stage",
    )
    clip = config.train.grad_clip_norm
    _require(clip is None or clip > 0, "train.grad_clip_norm", clip, "must be > 0 (or unset)")
    analysis = config.eval.analysis_examples
    _require(
        analysis is None or analysis >= config.eval.iwae_examples,
        "eval.analysis_examples",
        analysis,
        f"must be unset or >= eval.iwae_examples={config.eval.iwae_examples}",
    )


# Keys a resumed run may change: how long it trains, how often it reports, how it is evaluated.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "eval.",
)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: dict, config: ml_collections.ConfigDict) -> bool:
    """Raises ConfigError when `config` differs from the `saved` config.json of a run in a key
    outside RESUMABLE_KEYS (keys the saved file predates are ignored). Returns whether any
    key differs at all, i.e. whether config.json needs rewriting."""
    old = _flatten(saved)
    new = _flatten(json.loads(json.dumps(config.to_dict())))  # tuples as JSON lists, like saved
    changed = [key for key in sorted(new) if key in old and old[key] != new[key]]
    fixed = [key for key in changed if not key.startswith(RESUMABLE_KEYS)]
    if fixed:
        differences = "; ".join(f"{key}: {old[key]!r} -> {new[key]!r}" for key in fixed)
        raise ConfigError(
            f"the run in this workdir was trained with another config ({differences}); "
            "use a new --workdir, or the run's own values"
        )
    return bool(changed)
