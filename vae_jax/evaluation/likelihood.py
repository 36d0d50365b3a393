"""Likelihood evaluation of a trained VAE: the ELBO on batches (shared by the periodic evaluation
during training and by --mode=analyze), the chunked IWAE bound, per-dimension KL and active units.

All numbers are per example, in nats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import data, parallel, report
from vae_jax import distributions as D
from vae_jax import objectives as O
from vae_jax.models import Model, is_hierarchical
from vae_jax.progress import Progress

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E_q[z_i]) above this is active
IWAE_IMAGES_PER_CALL = 2048  # importance samples x images per decoder call
LABEL_KEYS = ("factors", "attributes", "label")  # per-example labels batches may carry


def marginal_kl_per_dimension(posterior: D.Gaussian) -> jax.Array:
    """KL(q(z_i|x) || N(0, 1)) of each marginal: [..., k]. For a diagonal posterior these sum to
    the KL; for a full one they ignore the correlations (they sum to at most the KL)."""
    if isinstance(posterior, D.DiagGaussian):
        marginal = posterior
    else:
        variance = jnp.diagonal(posterior.covariance(), axis1=-2, axis2=-1)
        marginal = D.DiagGaussian(posterior.mean, jnp.log(variance))
    return D.kl_per_dimension(marginal, D.standard_normal(posterior.mean.shape[-1]))


def make_elbo_fn(model: Model, mesh: jax.sharding.Mesh) -> Callable:
    """Jitted elbo_fn(params, x, key) -> per-example dict for images x [B, H, W, C], one
    z ~ q(z|x) each: elbo, rate, distortion [B]; for a one-group model the posterior "mean"
    [B, k] and the marginal "kl_per_dim" [B, k]; for a hierarchical one the rate of each
    group "rate_groups" [B, L] (objectives.group_rates). x is split over the mesh; the outputs
    are whole on every device."""

    def elbo_fn(params, x, key):
        out = model.apply(params, x, key)
        terms = out.elbo_terms(x)
        values = dict(elbo=terms.elbo, rate=terms.rate, distortion=terms.distortion)
        if is_hierarchical(model):
            values["rate_groups"] = O.group_rates(terms.rate_per_dim, model.group_sizes)
        else:
            values["mean"] = out.posterior.mean
            values["kl_per_dim"] = marginal_kl_per_dimension(out.posterior)
        return values

    replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    return jax.jit(
        elbo_fn, in_shardings=(replicated, sharded, replicated), out_shardings=replicated
    )


def elbo_per_example(
    elbo_fn: Callable,
    params,
    batches: Iterable[data.Batch],
    key: jax.Array,
    mesh: jax.sharding.Mesh,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """elbo_fn's outputs over one pass of `batches`, concatenated: [N] or [N, k], plus the
    batches' labels (LABEL_KEYS) where they carry them. Batch i uses fold_in(key, i); every
    process holds each batch whole, and a smaller last batch is padded to `batch_size` and its
    padding dropped from the results."""
    outputs: dict[str, list[np.ndarray]] = {}
    for i, batch in enumerate(batches):
        count = len(batch["image"])
        images, _ = parallel.pad_to({"image": batch["image"]}, batch_size)
        placed = parallel.put_global_batch(images, mesh)
        values = jax.device_get(elbo_fn(params, placed["image"], jax.random.fold_in(key, i)))
        values.update({name: batch[name] for name in LABEL_KEYS if name in batch})
        for name, value in values.items():
            outputs.setdefault(name, []).append(np.asarray(value)[:count])
    return {name: np.concatenate(values) for name, values in outputs.items()}


def make_log_weight_terms_fn(model: Model) -> Callable:
    """Jitted terms(params, x, key, num_samples) -> (log p(x|z_s), log p(z_s), log q(z_s|x)),
    each [S, B], for z_s ~ q(z|x) and images x [B, H, W, C] (hierarchical models: every
    group's prior and posterior, see models/hierarchical.py)."""

    def terms(params, x, key, num_samples: int):
        return model.apply(params, x, key, num_samples).log_weight_terms(x)

    return jax.jit(terms, static_argnums=3)


def iwae_bound_chunked(
    log_weight_terms_fn: Callable, params, x, key: jax.Array, num_samples: int, chunk_size: int
) -> np.ndarray:
    """objectives.iwae_bound over K = num_samples importance samples, decoded chunk_size at a
    time so that memory stays bounded: [B]. Chunk c draws with fold_in(key, first sample)."""
    chunks = [
        log_weight_terms_fn(params, x, jax.random.fold_in(key, start), size)
        for start in range(0, num_samples, chunk_size)
        for size in [min(chunk_size, num_samples - start)]
    ]
    log_px, log_pz, log_qz = (jnp.concatenate(parts) for parts in zip(*chunks))  # [K, B] each
    return np.asarray(O.iwae_bound(log_px, log_pz, log_qz, axis=0))


def iwae_nll(
    model: Model, params, images: np.ndarray, key: jax.Array, num_samples: int, chunk_size: int
) -> np.ndarray:
    """−IWAE bound per image [N] for images [N, H, W, C], decoding about IWAE_IMAGES_PER_CALL
    images per call (larger calls are memory-bound on CPU)."""
    terms_fn = make_log_weight_terms_fn(model)
    examples_per_call = max(1, IWAE_IMAGES_PER_CALL // chunk_size)
    progress = Progress(f"IWAE bound, K = {num_samples}", len(images))
    bounds = []
    for start in range(0, len(images), examples_per_call):
        x = images[start : start + examples_per_call]
        key_x = jax.random.fold_in(key, start)
        bounds.append(iwae_bound_chunked(terms_fn, params, x, key_x, num_samples, chunk_size))
        progress.advance(len(x))
    return -np.concatenate(bounds)


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD):
    """Burda et al. (2016): dimension i is active when Var_x(E_q[z_i|x]) > threshold.

    means: [N, k] posterior means. Returns (number active, variances [k])."""
    variances = np.var(np.asarray(means, np.float64), axis=0)
    return int(np.sum(variances > threshold)), variances


def group_rate_metrics(rate_groups: np.ndarray, prefix: str = "") -> dict[str, float]:
    """rate_group_<g> (nats, ± s.e.) and rate_share_group_<g> (its fraction of the total mean
    rate) of per-example group rates [N, L], top group first; keys after `prefix`."""
    results = {}
    total = float(np.mean(rate_groups.sum(axis=1)))
    for g in range(rate_groups.shape[1]):
        results.update(report.mean_with_error(f"{prefix}rate_group_{g}", rate_groups[:, g]))
        results[f"{prefix}rate_share_group_{g}"] = float(np.mean(rate_groups[:, g])) / total
    return results
