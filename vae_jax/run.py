"""load_run(workdir) -> Run: a trained model ready for analysis, in one call.

    from vae_jax import load_run
    run = load_run("runs/shapes")                   # latest checkpoint; step=N or "best"
    posterior = run.encode(x)                       # x: [B, H, W, C] in [0, 1]
    images = run.sample(jax.random.key(0), 16, temperature=0.7)
    run.elbo(x), run.log_likelihood(x, 1000)        # per example, nats

Hierarchical runs (model.kind="hierarchical" or "ladder_mlp") have the same functions over all
latent groups: `encode` returns one posterior per group (top first, each code at its posterior
mean), `sample` takes one temperature or one per group, and `reconstruct(x, groups=k)` keeps the
posterior mean of the top k groups and draws the rest from the prior (VDVAE's figure of what the
top groups encode).

The averaged (EMA) parameters by default (ema=False: the raw ones); only they are read from the
checkpoint, never the optimizer's moments. The model functions are jitted once per input shape and
accept numpy or jax arrays of any batch size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vae_jax import checkpoints, data
from vae_jax import config as config_lib
from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.evaluation import likelihood
from vae_jax.models import make_model


class Run:
    """A trained VAE: its config, checkpoint step and parameters (`ema`: the averaged ones), with
    jitted model functions."""

    def __init__(
        self, config: ml_collections.ConfigDict, step: int, params, workdir: Path, ema: bool
    ):
        self.config = config
        self.step = step
        self.params = params
        self.workdir = workdir
        self.ema = ema
        self.image_shape = data.image_shape(config.dataset)
        self.model = make_model(config.model, self.image_shape)
        self._encode = jax.jit(functools.partial(self.model.apply, method="encode"))
        self._decode = jax.jit(functools.partial(self.model.apply, method="decode"))
        self._generate = jax.jit(
            functools.partial(self.model.apply, method="generate"), static_argnums=(2, 3)
        )
        self._reconstruct = jax.jit(
            functools.partial(self.model.apply, method="reconstruct"), static_argnums=(3, 4)
        )
        self._elbo = jax.jit(lambda params, x, key: self.model.apply(params, x, key).elbo_terms(x))
        self._log_weight_terms = likelihood.make_log_weight_terms_fn(self.model)

    @property
    def available_steps(self) -> list[int]:
        """The steps of the checkpoints in <workdir>/checkpoints/, ascending."""
        return checkpoints.available_steps(self.workdir)

    @property
    def latent_dim(self) -> int:
        """All latents, k = Σ group_sizes."""
        return sum(self.group_sizes)

    @property
    def group_sizes(self) -> tuple[int, ...]:
        """Latents per group, top first (one group for conv and mlp models)."""
        return self.model.group_sizes

    def encode(self, x) -> D.Gaussian | list[D.DiagGaussian]:
        """q(z|x) over [B, k] for images x: [B, H, W, C] in [0, 1]; a hierarchical model's list
        of per-group posteriors [B, k_l], top first."""
        return self._encode(self.params, jnp.asarray(x, jnp.float32))

    def decode(self, z) -> L.Likelihood:
        """p(x|z) for codes z: [..., k] (every group's, top first); `.mean()` is the expected
        image [..., H, W, C]."""
        return self._decode(self.params, jnp.asarray(z, jnp.float32))

    def reconstruct(
        self, x, groups: int | None = None, key: jax.Array | None = None, temperature: float = 1.0
    ) -> jax.Array:
        """Mean images [B, H, W, C] of images x [B, H, W, C] decoded at the posterior mean of the
        top `groups` latent groups (None: all), the groups below drawn from the prior at
        `temperature` (key: default key(0))."""
        groups = len(self.group_sizes) if groups is None else groups
        key = jax.random.key(0) if key is None else key
        x = jnp.asarray(x, jnp.float32)
        return self._reconstruct(self.params, x, key, groups, float(temperature)).mean()

    def sample(
        self,
        key: jax.Array,
        n: int,
        temperature: float | Sequence[float] = 1.0,
        mean: bool = True,
    ) -> jax.Array:
        """Images of n codes from the prior, each group's σ scaled by its temperature (one for
        all, or one per group): [n, H, W, C]; the mean of p(x|z), or with mean=False a draw
        x ~ p(x|z)."""
        z_key, x_key = jax.random.split(key)
        if not isinstance(temperature, (int, float)):
            temperature = tuple(float(t) for t in temperature)
        likelihood_ = self._generate(self.params, z_key, n, temperature)
        return likelihood_.mean() if mean else likelihood_.sample(x_key)

    def elbo(self, x, key: jax.Array | None = None) -> jax.Array:
        """ELBO per image [B] of images x [B, H, W, C], one z ~ q(z|x) each (key: default
        key(0))."""
        key = jax.random.key(0) if key is None else key
        return self._elbo(self.params, jnp.asarray(x, jnp.float32), key).elbo

    def log_likelihood(
        self, x, num_samples: int, key: jax.Array | None = None, chunk_size: int = 100
    ) -> np.ndarray:
        """log p(x) per image [B], estimated from below by the IWAE bound with num_samples
        importance samples, chunk_size decoded at a time (key: default key(0))."""
        key = jax.random.key(0) if key is None else key
        x = jnp.asarray(x, jnp.float32)
        return likelihood.iwae_bound_chunked(
            self._log_weight_terms, self.params, x, key, num_samples, chunk_size
        )

    def posterior_mean(self, x) -> jax.Array:
        """The posterior mean of every latent of images x [B, H, W, C]: [B, k] (hierarchical
        models: the groups' means concatenated, top first, as `decode` takes them)."""
        posterior = self.encode(x)
        if isinstance(posterior, list):
            return jnp.concatenate([q.mean for q in posterior], axis=-1)
        return posterior.mean

    def traverse(self, x, dims: Sequence[int], values: Sequence[float]) -> jax.Array:
        """Latent traversals of one image x [H, W, C]: its posterior mean with dimension d set to
        each value v, decoded. Returns [len(dims), len(values), H, W, C]."""
        mean = self.posterior_mean(jnp.asarray(x)[None])[0]  # [k]
        chosen = jax.nn.one_hot(jnp.asarray(dims), self.latent_dim)[:, None, :]  # [D, 1, k]
        values = jnp.asarray(values, mean.dtype)[None, :, None]  # [1, V, 1]
        return self.decode(mean * (1 - chosen) + values * chosen).mean()

    def interpolate(self, x0, x1, steps: int) -> jax.Array:
        """Decoded linear interpolation between the posterior means of x0 and x1 [H, W, C]:
        [steps, H, W, C], the first and last being the two reconstructions."""
        means = self.posterior_mean(jnp.stack([jnp.asarray(x0), jnp.asarray(x1)]))
        weights = jnp.linspace(0.0, 1.0, steps)[:, None]
        return self.decode((1 - weights) * means[0] + weights * means[1]).mean()

    def dataset(self, split: str = "test", num_examples: int | None = None) -> data.EvalBatches:
        """The run's evaluation input pipeline over the first `num_examples` of `split` (None:
        all of it), ordered, without augmentation."""
        return data.eval_batches(self.config, split, num_examples)


def _step_dir(workdir: Path, step: int | str | None) -> Path:
    """The directory of checkpoint `step` (None: the latest; "best": the best by validation
    ELBO). Raises FileNotFoundError listing what exists."""
    if step == "best":
        best = checkpoints.read_best(workdir)
        if best is None:
            raise FileNotFoundError(
                f"{workdir} has no best checkpoint yet (it is saved at the first periodic "
                "evaluation); use step=None for the latest"
            )
        return workdir / checkpoints.BEST_DIR / str(best["step"])
    steps = checkpoints.available_steps(workdir)
    if not steps:
        contents = sorted(p.name for p in workdir.iterdir())
        raise FileNotFoundError(f"{workdir} has no checkpoints; it contains: {contents}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(
            f"{workdir} has no checkpoint at step {step}; steps: {steps}, or 'best'"
        )
    return workdir / checkpoints.CHECKPOINT_DIR / str(step)


def load_run(workdir: str | Path, step: int | str | None = None, ema: bool = True) -> Run:
    """Restores the config and parameters of the run in `workdir`: its latest checkpoint, the
    checkpoint at `step`, or with step="best" the best one by validation ELBO. `ema`: the
    averaged parameters (a checkpoint from before averaging existed has only the raw ones, with
    a warning). Raises FileNotFoundError listing what exists when there is nothing to load."""
    workdir = Path(workdir)
    config = config_lib.read_config(workdir)
    step_dir = _step_dir(workdir, step)
    saved = checkpoints.restore_subtrees(step_dir, ("ema_params", "params"))
    if ema and "ema_params" not in saved:
        logging.warning("%s predates parameter averaging: loading its raw parameters", step_dir)
        ema = False
    params = saved["ema_params"] if ema else saved["params"]
    return Run(config, int(step_dir.name), params, workdir, ema)
