"""FID and KID of a run's samples and reconstructions against its test split (network and
distances: vae_jax.fid).

The test images' features are computed once per protocol (dataset, folder, split, crop, image
size, number of images, weights) and cached under ~/.cache/vae_jax/fid_reference/ with the
protocol inside, so that every point of a sweep and every later analysis reads them back.
Samples and reconstructions are E[x|z] images (the figures' images), quantised to 8 bits as
PNG files would be.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import jax
import numpy as np
from absl import logging

from vae_jax import fid, files, parallel
from vae_jax.progress import Progress

if TYPE_CHECKING:
    from vae_jax.run import Run

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def protocol(run: Run) -> dict:
    """What the reference features depend on, as stored in their cache."""
    d = run.config.dataset
    return {
        "network": "Inception-v3 2015-12-05 pool3, TF1 bilinear resize to 299",
        "weights_sha256": fid.WEIGHTS_SHA256,
        "dataset": d.name,
        "path": d.path,
        "split": "test",
        "crop": d.crop,
        "image_size": list(run.image_shape),
        "max_reference_images": run.config.eval.fid_samples,
    }


def protocol_line(protocol_: dict, num_reference: int, num_generated: int) -> str:
    """The protocol in one line, for eval.json, results and the README."""
    size = "x".join(str(s) for s in protocol_["image_size"][:2])
    return (
        f"{protocol_['network']}, weights sha256 {protocol_['weights_sha256'][:12]}; "
        f"{num_generated} generated vs {num_reference} {protocol_['split']} images of "
        f"{protocol_['dataset']} (crop {protocol_['crop']}, {size})"
    )


def features_of(
    feature_fn: Callable, params, images: Iterable[np.ndarray], batch_size: int, mesh, progress
) -> np.ndarray:
    """Pool3 features [N, 2048] of batches of images [b, H, W, C] in [0, 1] (b <= batch_size;
    a smaller batch is padded and its padding dropped), advancing `progress` (a
    progress.Progress) by each batch."""
    features = []
    for batch in images:
        count = len(batch)
        padded, _ = parallel.pad_to({"image": fid.to_8bit(batch)}, batch_size)
        placed = parallel.put_global_batch(padded, mesh)["image"]
        features.append(np.asarray(feature_fn(params, placed))[:count])
        progress.advance(count)
    return np.concatenate(features)


def reference_features(run: Run, compute: Callable[[str, Iterable[np.ndarray], int], np.ndarray]):
    """Features [N, 2048] of the first eval.fid_samples test images (N: fewer when the split
    is smaller), from the cache when it holds them for this protocol. compute(what, batches,
    count) computes features."""
    protocol_ = protocol(run)
    digest = hashlib.sha256(json.dumps(protocol_, sort_keys=True).encode()).hexdigest()
    dataset = protocol_["dataset"].replace("/", "_")  # cmaterdb/bangla
    path = fid.cache_dir() / "fid_reference" / f"{dataset}-{digest[:16]}.npz"
    if path.exists():
        with np.load(path) as cached:
            if json.loads(str(cached["protocol"])) == protocol_:
                return cached["features"]
    test = run.dataset("test", run.config.eval.fid_samples)
    features = compute("FID reference: test images", (b["image"] for b in test), test.num_examples)
    files.write_npz(path, features=features, protocol=json.dumps(protocol_, sort_keys=True))
    return features


def distances(
    name: str, features: np.ndarray, reference: np.ndarray, reference_stats: tuple, seed: int
) -> dict:
    """{fid_<name>, kid_<name>, kid_<name>_sd} of generated features against the reference
    features and their fid.feature_statistics."""
    mean, cov = fid.feature_statistics(features)
    kid, kid_sd = fid.kernel_inception_distance(
        features, reference, np.random.default_rng(seed), KID_SUBSETS, KID_SUBSET_SIZE
    )
    return {
        f"fid_{name}": fid.frechet_distance(mean, cov, *reference_stats),
        f"kid_{name}": kid,
        f"kid_{name}_sd": kid_sd,
    }


def sample_quality(run: Run, key: jax.Array) -> dict:
    """FID and KID of eval.fid_samples samples at each of eval.fid_temperatures ("fid_t0.7")
    and of the reconstructions of the reference images ("fid_reconstructions"), with the
    protocol ("fid_protocol"). The network sees eval.batch_size images a call, or all of
    eval.fid_samples when fewer."""
    cfg = run.config.eval
    mesh = parallel.make_mesh()
    batch_size = min(cfg.batch_size, cfg.fid_samples)
    parallel.check_divisible(
        "eval.batch_size" if batch_size == cfg.batch_size else "eval.fid_samples", batch_size, mesh
    )
    params = fid.load_params()
    feature_fn = fid.make_feature_fn(mesh)
    passes = cfg.fid_samples * (len(cfg.fid_temperatures) + 2)
    logging.info(
        "FID and KID: up to %d Inception-v3 passes (%d samples at each of %d temperature(s), "
        "as many test images and their reconstructions; the test images' features are cached) "
        "on %s",
        passes,
        cfg.fid_samples,
        len(cfg.fid_temperatures),
        jax.default_backend(),
    )

    def compute(what: str, images: Iterable[np.ndarray], count: int) -> np.ndarray:
        progress = Progress(what, count)
        return features_of(feature_fn, params, images, batch_size, mesh, progress)

    reference = reference_features(run, compute)
    if len(reference) < 2:
        logging.info("No FID or KID: the test split has %d image(s)", len(reference))
        return {}
    reference_stats = fid.feature_statistics(reference)

    def scored(name: str, images: Iterable[np.ndarray], count: int) -> dict:
        features = compute(f"FID: {name}", images, count)
        return distances(name, features, reference, reference_stats, run.config.seed)

    results = {"fid_protocol": protocol_line(protocol(run), len(reference), cfg.fid_samples)}
    for t, temperature in enumerate(cfg.fid_temperatures):
        temperature_key = jax.random.fold_in(key, t)
        samples = (
            np.asarray(run.sample(jax.random.fold_in(temperature_key, i), n, temperature))
            for i, start in enumerate(range(0, cfg.fid_samples, batch_size))
            for n in [min(batch_size, cfg.fid_samples - start)]
        )
        results.update(scored(f"t{temperature:g}", samples, cfg.fid_samples))
    test = run.dataset("test", len(reference))
    reconstructions = (np.asarray(run.reconstruct(b["image"])) for b in test)
    results.update(scored("reconstructions", reconstructions, len(reference)))
    return results
