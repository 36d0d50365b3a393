"""load_run(workdir) -> Run: a trained model ready for analysis, in one call.

    from vae_jax import load_run
    run = load_run("runs/shapes")                   # latest checkpoint; step=N for another
    posterior = run.encode(x)                       # x: [B, H, W, C] in [0, 1]
    images = run.sample(jax.random.key(0), 16, temperature=0.7)

Only the parameters are restored (no optimizer is built). The model functions are jitted once per
input shape and accept numpy or jax arrays of any batch size.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from vae_jax import checkpoints, data
from vae_jax import config as config_lib
from vae_jax import distributions as D
from vae_jax import likelihoods as L
from vae_jax.models import VAE, make_model


class Run:
    """A trained VAE: its config, checkpoint step and parameters, with jitted model functions."""

    def __init__(self, config: ml_collections.ConfigDict, step: int, params, workdir: Path):
        self.config = config
        self.step = step
        self.params = params
        self.workdir = workdir
        self.image_shape = data.image_shape(config.dataset)
        self.model = make_model(config.model, self.image_shape)
        self._encode = jax.jit(functools.partial(self.model.apply, method=VAE.encode))
        self._decode = jax.jit(functools.partial(self.model.apply, method=VAE.decode))

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    def encode(self, x) -> D.Gaussian:
        """q(z|x) for images x: [..., H, W, C] in [0, 1]; the posterior is over [..., k]."""
        return self._encode(self.params, jnp.asarray(x, jnp.float32))

    def decode(self, z) -> L.Likelihood:
        """p(x|z) for codes z: [..., k]; `.mean()` is the expected image [..., H, W, C]."""
        return self._decode(self.params, jnp.asarray(z, jnp.float32))

    def reconstruct(self, x) -> jax.Array:
        """Mean image decoded from the posterior mean: [..., H, W, C] -> [..., H, W, C]."""
        return self.decode(self.encode(x).mean).mean()

    def sample(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        """Mean images of n codes z ~ N(0, temperature² I): [n, H, W, C]."""
        z = temperature * jax.random.normal(key, (n, self.latent_dim))
        return self.decode(z).mean()

    def traverse(self, x, dims: Sequence[int], values: Sequence[float]) -> jax.Array:
        """Latent traversals of one image x [H, W, C]: its posterior mean with dimension d set to
        each value v, decoded. Returns [len(dims), len(values), H, W, C]."""
        mean = self.encode(jnp.asarray(x)[None]).mean[0]  # [k]
        chosen = jax.nn.one_hot(jnp.asarray(dims), self.latent_dim)[:, None, :]  # [D, 1, k]
        values = jnp.asarray(values, mean.dtype)[None, :, None]  # [1, V, 1]
        return self.decode(mean * (1 - chosen) + values * chosen).mean()

    def interpolate(self, x0, x1, steps: int) -> jax.Array:
        """Decoded linear interpolation between the posterior means of x0 and x1 [H, W, C]:
        [steps, H, W, C], the first and last being the two reconstructions."""
        means = self.encode(jnp.stack([jnp.asarray(x0), jnp.asarray(x1)])).mean
        weights = jnp.linspace(0.0, 1.0, steps)[:, None]
        return self.decode((1 - weights) * means[0] + weights * means[1]).mean()

    def dataset(self, split: str = "test", num_examples: int | None = None) -> Iterable[data.Batch]:
        """The run's evaluation input pipeline over the first `num_examples` of `split` (None:
        all of it), ordered, without augmentation."""
        return data.eval_batches(self.config, split, num_examples)


def load_run(workdir: str | Path, step: int | None = None) -> Run:
    """Restores the config and parameters of the run in `workdir` (its latest checkpoint, or
    `step`). Raises FileNotFoundError listing what exists when there is nothing to load."""
    workdir = Path(workdir)
    config = config_lib.read_config(workdir)
    if not (workdir / checkpoints.CHECKPOINT_DIR).is_dir():
        contents = sorted(p.name for p in workdir.iterdir())
        raise FileNotFoundError(f"{workdir} has no checkpoints; it contains: {contents}")
    manager = checkpoints.checkpoint_manager(workdir)
    available = sorted(manager.all_steps())
    if not available:
        raise FileNotFoundError(f"{workdir / checkpoints.CHECKPOINT_DIR} holds no checkpoint")
    step = available[-1] if step is None else step
    if step not in available:
        raise FileNotFoundError(f"{workdir} has no checkpoint at step {step}; steps: {available}")
    state = checkpoints.restore_arrays(manager, step)
    manager.close()
    return Run(config, step, state["params"], workdir)
