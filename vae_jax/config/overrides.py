"""Configs from outside the experiment file: dotted-key overrides (sweeps, --mode=analyze), the
run's config.json, and what a resumed run may change."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from vae_jax import files
from vae_jax.config.schema import get_config
from vae_jax.config.validation import ConfigError

CONFIG_FILE = "config.json"

# Keys a resumed run may change: how long it trains, how often it reports, how it is evaluated.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.keep_every",
    "eval.",
)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"section.key": value}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of `config` with each dotted key ("objective.beta") set to its value; `config` is
    left unchanged. JSON lists become the tuples the config holds.

    Raises ConfigError naming the key if it is not a config key or the value has the wrong type
    (a string for a float, a float for an int, a bool for a number).
    """
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        *path, name = key.split(".")
        section = config
        for depth, part in enumerate(path):
            if part not in section or not isinstance(section[part], ml_collections.ConfigDict):
                raise ConfigError(
                    f"{key} is not a config key: {'.'.join(path[: depth + 1])} is not a section"
                )
            section = section[part]
        if name not in section:
            where = ".".join(path) or "the config"
            raise ConfigError(
                f"{key} is not a config key; {where} has: {', '.join(sorted(section.keys()))}"
            )
        if isinstance(section[name], ml_collections.ConfigDict):
            raise ConfigError(f"{key} is a section; set its keys ({key}.<name>)")
        expected = section.get_type(name)
        # bool is an int to Python, so ConfigDict would take True for latent_dim.
        wrong_bool = expected is not type(None) and (expected is bool) != isinstance(value, bool)
        try:
            if wrong_bool:
                raise TypeError
            section[name] = value
        except TypeError:
            raise ConfigError(
                f"{key}={value!r} is not valid: must be of type {expected.__name__}"
            ) from None
    return config


def write_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Writes the resolved config to <workdir>/config.json (what load_run reads), atomically."""
    files.write_json(Path(workdir) / CONFIG_FILE, config.to_dict(), sort_keys=True)


def read_config_dict(workdir: str | Path) -> dict[str, Any]:
    """The plain dict stored in <workdir>/config.json."""
    return json.loads((Path(workdir) / CONFIG_FILE).read_text())


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a run was trained with, from <workdir>/config.json, on top of the current
    defaults (so keys added to the schema since the run was trained have their default).

    Raises FileNotFoundError without config.json, ConfigError naming the file when it does not
    fit the schema.
    """
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training run directory")
    try:
        return apply_overrides(get_config(), flatten(read_config_dict(workdir)))
    except (ConfigError, ValueError) as error:  # unknown key, wrong type, bad JSON
        raise ConfigError(
            f"{path} does not fit the config schema of vae_jax/config/schema.py: "
            f"{str(error).splitlines()[0][:300]}"
        ) from error


def check_resumable(
    saved: dict, config: ml_collections.ConfigDict, *, allow_change: bool = False
) -> bool:
    """Compares `config` with the `saved` config.json of the run it would resume (keys the saved
    file predates are ignored).

    Raises ConfigError naming each key outside RESUMABLE_KEYS that differs (old -> new), unless
    `allow_change` (--allow_config_change), which logs a warning listing them instead. Returns
    whether config.json needs rewriting (a key differs, or the schema has keys it lacks).
    """
    old = flatten(saved)
    new = flatten(json.loads(json.dumps(config.to_dict())))  # tuples as JSON lists, like saved
    changed = [key for key in sorted(new) if key in old and old[key] != new[key]]
    fixed = [key for key in changed if not key.startswith(RESUMABLE_KEYS)]
    if fixed:
        differences = "; ".join(f"{key}: {old[key]!r} -> {new[key]!r}" for key in fixed)
        if not allow_change:
            raise ConfigError(
                f"the run in this workdir was trained with another config ({differences}); "
                "use a new --workdir or the run's own values, or pass --allow_config_change "
                "to resume this run with the new values"
            )
        logging.warning("Resuming with a changed config (--allow_config_change): %s", differences)
    return bool(changed) or any(key not in old for key in new)  # new keys: record them
