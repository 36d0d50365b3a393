"""What experiment files share: the schema's `get_config()` (every key with its default, from
vae_jax/config/schema.py), the `:tiny` shrinking, the checking of `:variant` arguments, the
standard sweep grid, and the disentanglement study of Locatello et al. (2019): its protocol
(`:study`), one variant per method (`:factor_vae`, ...) and each method's grid."""

import ml_collections

from vae_jax.config import ConfigError, get_config

__all__ = [
    "METHODS",
    "apply_method",
    "apply_study",
    "beta_latent_seed_sweep",
    "factor_experiment",
    "factor_sweep",
    "get_config",
    "make_tiny",
    "method_of",
    "study_sweep",
    "variant_options",
]

# The disentangling methods (objective.kind), each a `:<method>` variant of the experiments
# with ground-truth factors.
METHODS = ("beta_vae", "annealed", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")

# Each method's hyperparameter grid in disentanglement_lib's study (Locatello et al. 2019).
STUDY_GRIDS = {
    "beta_vae": [{"objective.beta": b} for b in (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)],
    "annealed": [{"objective.capacity": c} for c in (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)],
    "beta_tcvae": [{"objective.beta": b} for b in (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)],
    "factor_vae": [
        {"objective.factor_vae_gamma": g} for g in (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)
    ],
    "dip_vae_i": [
        {"objective.dip_lambda_od": od, "objective.dip_lambda_d": 10 * od}
        for od in (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
    ],
    "dip_vae_ii": [
        {"objective.dip_lambda_od": od, "objective.dip_lambda_d": od}
        for od in (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
    ],
}
# The grid value a `:<method>` variant trains with when no sweep picks one.
METHOD_DEFAULTS = {
    "beta_vae": STUDY_GRIDS["beta_vae"][2],  # β = 4
    "annealed": STUDY_GRIDS["annealed"][2],  # C = 25 nats
    "beta_tcvae": STUDY_GRIDS["beta_tcvae"][3],  # β = 6
    "factor_vae": STUDY_GRIDS["factor_vae"][2],  # γ = 30
    "dip_vae_i": STUDY_GRIDS["dip_vae_i"][3],  # λ_od = 10, λ_d = 100
    "dip_vae_ii": STUDY_GRIDS["dip_vae_ii"][3],  # λ_od = λ_d = 10
}
STUDY_SEEDS = (0, 1, 2)  # the study trained 50 seeds per setting
# The variants of the experiments on datasets with ground-truth factors.
FACTOR_VARIANTS = ("tiny", "study", *METHODS)


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
    config.model.latent_dims = (8, 4)
    config.model.blocks = tuple(1 for _ in config.model.blocks)
    config.model.latent_channels = 2
    config.model.mixture_components = 2
    config.train.update(batch_size=8, num_steps=6, log_every=3, eval_every=6, checkpoint_every=6)
    config.eval.update(
        batch_size=16,
        num_examples=32,
        analysis_examples=32,
        iwae_examples=8,
        iwae_samples=10,
        iwae_chunk=5,
        num_figures=8,
        factor_score_points=20,
        # :study renders its own codes for the code-based factor metrics: a few hundred here
        factor_metric_points=None if config.eval.factor_metric_points is None else 200,
        fid_samples=0,  # the Inception network compiles for longer than a tiny run trains
    )
    return config


def method_of(options: set[str]) -> str | None:
    """The one method named among a variant's options, or None; two methods are an error."""
    methods = sorted(options & set(METHODS))
    if len(methods) > 1:
        raise ConfigError(f"variants {', '.join(methods)} name two methods: pick one")
    return methods[0] if methods else None


def apply_method(config: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """objective.kind = `method` with its METHOD_DEFAULTS value (β = 1 for the kinds that do not
    read β); annealed capacity rises with γ = 1000 over 100k steps as in the study, or over the
    whole run when it is shorter."""
    config.objective.kind = method
    if method not in ("beta_vae", "beta_tcvae"):
        config.objective.beta = 1.0
    for key, value in METHOD_DEFAULTS[method].items():
        section, name = key.split(".")
        config[section][name] = value
    if method == "annealed":
        capacity_steps = min(100_000, config.train.num_steps)
        config.objective.update(capacity_steps=capacity_steps, capacity_gamma=1000.0)
    return config


def apply_study(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """disentanglement_lib's protocol: conv 32-32-64-64 (4x4, stride 2) + 256 dense, 10 latents,
    Bernoulli pixels, Adam 1e-4, batch 64, 300k steps; scored as the library scores (see
    vae_jax/evaluation/disentanglement.py): 10,000 training and 5,000 test codes of rendered
    images for MIG, DCI, SAP, modularity and explicitness, DCI from gradient boosting, liblinear
    one-vs-rest logistic regressions, 10,000 / 5,000 BetaVAE and FactorVAE points."""
    config.model.update(
        kind="conv",
        channels=(32, 32, 64, 64),
        hidden=(256,),
        latent_dim=10,
        likelihood="bernoulli",
        posterior="diag",
    )
    config.eval.update(
        factor_score_points=None,  # the study's 10,000 BetaVAE / FactorVAE points
        factor_metric_points=10_000,
        dci_predictor="gradient_boosting",
        logistic_solver="liblinear",
    )
    config.train.ema_decay = 0.0  # the study scored its raw parameters, not an average
    config.train.update(
        batch_size=64,
        num_steps=300_000,
        learning_rate=1e-4,
        lr_schedule="constant",
        warmup_steps=0,
        log_every=500,
        eval_every=10_000,
        checkpoint_every=10_000,
    )
    return config


def study_sweep(method: str, seeds: tuple[int, ...] = STUDY_SEEDS) -> list[dict]:
    """`method`'s grid in the study × seeds (6 × 3 = 18 runs)."""
    return [{**point, "seed": s} for point in STUDY_GRIDS[method] for s in seeds]


def factor_experiment(dataset_name: str, arg: str) -> ml_collections.ConfigDict:
    """The experiment on a 64x64 dataset with ground-truth factors (shapes, dsprites, shapes3d):
    the convolutional encoder/decoder of Burgess et al. (2018), four 4x4 stride-2 convs
    32-32-64-64, a 256-unit dense layer, 10 latents, Bernoulli pixels, β = 4, 3,000 steps of
    Adam 1e-3; `arg` picks FACTOR_VARIANTS (:study, a method, :tiny)."""
    config = get_config()
    config.dataset.name = dataset_name
    config.dataset.image_size = 64
    config.model.latent_dim = 10
    config.model.likelihood = "bernoulli"
    config.objective.beta = 4.0
    config.train.update(
        batch_size=64,
        num_steps=3_000,
        learning_rate=1e-3,
        log_every=50,
        eval_every=1_000,
        checkpoint_every=1_000,
    )
    config.eval.num_examples = 2_048
    config.eval.iwae_examples = 128  # x 1000 samples: about two minutes on 2 CPU cores
    # BetaVAE / FactorVAE scores from 1,000 training points, a tenth of disentanglement_lib's
    # (whose 2.9 million renders and encodings take about an hour on 2 CPU cores); :study uses
    # the library's.
    config.eval.factor_score_points = 1_000
    # MIG, DCI, SAP, modularity and explicitness of the test split's codes, DCI from extremely
    # randomised trees (the schema's defaults, fast); :study scores as the library does.
    options = variant_options(arg, FACTOR_VARIANTS)
    if "study" in options:
        apply_study(config)
    if method := method_of(options):
        apply_method(config, method)
    if "tiny" in options:
        make_tiny(config)
    return config


def factor_sweep(arg: str) -> list[dict]:
    """The study grid of the method `arg` names (β-VAE's without one) × 3 seeds: 18 runs."""
    return study_sweep(method_of(variant_options(arg, FACTOR_VARIANTS)) or "beta_vae")
