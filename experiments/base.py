"""What experiment files share: the schema's `get_config()` (every key with its default, from
vae_jax/config/schema.py), the `:tiny` shrinking, the checking of `:variant` arguments, and the
standard sweep grid."""

import ml_collections

from vae_jax.config import ConfigError, get_config

__all__ = ["beta_latent_seed_sweep", "get_config", "make_tiny", "variant_options"]


def variant_options(arg: str, variants: tuple[str, ...]) -> set[str]:
    """The options of a `--config=<file>:<arg>` argument, comma-separated ("conv,tiny"); "" is
    the full run.

    Raises ConfigError naming the unknown options and the experiment's `variants`, so that a
    mistyped variant fails instead of silently training the full run.
    """
    options = set(arg.split(",")) - {""}
    unknown = sorted(options - set(variants))
    if unknown:
        raise ConfigError(
            f"unknown variant {', '.join(map(repr, unknown))}; this experiment's variants: "
            f"{', '.join(variants)} (comma-separated; none for the full run)"
        )
    return options


def beta_latent_seed_sweep(latent_dims: tuple[int, ...]) -> list[dict]:
    """The standard sweep: β ∈ {1, 2, 4, 8, 16} × `latent_dims` × seed ∈ {0, 1, 2}."""
    return [
        {"objective.beta": b, "model.latent_dim": d, "seed": s}
        for b in (1, 2, 4, 8, 16)
        for d in latent_dims
        for s in (0, 1, 2)
    ]


def make_tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks model, batch, steps and evaluation for smoke runs and tests (the `:tiny` argument).

    Keeps the number of conv stages, so the image size stays valid.
    """
    config.model.latent_dim = 4
    config.model.channels = tuple(8 for _ in config.model.channels)
    config.model.hidden = (16,)
    config.train.update(batch_size=8, num_steps=6, log_every=3, eval_every=6, checkpoint_every=6)
    config.eval.update(
        batch_size=16,
        num_examples=32,
        analysis_examples=32,
        iwae_examples=8,
        iwae_samples=10,
        iwae_chunk=5,
        num_figures=8,
    )
    return config
