"""The config: its schema (every key with its default), validation, dotted overrides and the
run's config.json.

    schema.py      get_config(): the defaults experiment files start from
    validation.py  validate(config): every bad value fails before compiling, naming its key
    overrides.py   apply_overrides(config, {"objective.beta": 4.0}), config.json, resumability
"""

from vae_jax.config.overrides import (
    CONFIG_FILE,
    RESUMABLE_KEYS,
    apply_overrides,
    check_resumable,
    flatten,
    read_config,
    read_config_dict,
    write_config,
)
from vae_jax.config.schema import get_config
from vae_jax.config.validation import ConfigError, validate

__all__ = [
    "CONFIG_FILE",
    "RESUMABLE_KEYS",
    "ConfigError",
    "apply_overrides",
    "check_resumable",
    "flatten",
    "get_config",
    "read_config",
    "read_config_dict",
    "validate",
    "write_config",
]
