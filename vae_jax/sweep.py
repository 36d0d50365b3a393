"""Sweeps, the training side: expand an experiment's `get_sweep()` grid, validate every point,
run one or all of them. results.py reads finished points back.

A sweep is a list of override dicts, one per run, whose keys are dotted config paths:
`[{"objective.beta": 4.0, "model.latent_dim": 32, "seed": 0}, ...]`. Point i trains in
`<workdir>/<point name>` (`beta=4,latent_dim=32,seed=0`) with the command-line config plus its
overrides. A point whose latest checkpoint has reached `train.num_steps` is skipped; an interrupted
one resumes. Listing and skipping only read files: nothing compiles.

Files a sweep adds to the workdirs of train.py:

    <workdir>/sweep.json               every point's index, name and overrides
    <workdir>/<point>/sweep_point.json name, index, overrides, wall_time_s (summed over resumes;
                                       a vectorised point's share of its group's), group_size
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from vae_jax import checkpoints, files
from vae_jax import config as config_lib

SWEEP_FILE = "sweep.json"
POINT_FILE = "sweep_point.json"

Overrides = dict[str, Any]


class SweepError(config_lib.ConfigError):
    """A sweep that cannot run or be read; the message names the point, key or file at fault."""


# ---------------------------------------------------------------------------------------------
# The grid


def load_sweep(config_spec: str | Path) -> list[Overrides]:
    """The override dicts of `get_sweep(variant)` in the experiment file of `config_spec`
    ("path[:variant]", as --config takes it)."""
    path_text, _, variant = str(config_spec).partition(":")
    path = Path(path_text)
    spec = importlib.util.spec_from_file_location(f"_sweep_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SweepError(f"{path} is not a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_sweep", None)):
        raise SweepError(
            f"{path} defines no get_sweep(arg): add one returning a list of override dicts, e.g. "
            '[{"objective.beta": b, "seed": s} for b in (1, 4) for s in (0, 1)]'
        )
    points = [dict(point) for point in module.get_sweep(variant)]
    if not points:
        raise SweepError(f"{path}: get_sweep({variant!r}) returned no points")
    return points


def format_value(value: Any) -> str:
    """A value as it appears in a point name: 4.0 -> "4", 0.5 -> "0.5", (32, 64) -> "32-64".

    Characters that would break a directory name or the `k=v,k=v` form become "_".
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = str(int(value))
    elif isinstance(value, (tuple, list)):
        text = "-".join(format_value(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[\s,=/\\]", "_", text)


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Dotted key -> its last component, or the whole key where two keys share a last component."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: name if last.count(name) == 1 else key for key, name in zip(keys, last)}


def point_name(overrides: Mapping[str, Any]) -> str:
    """`beta=4,latent_dim=32,seed=0` for {"objective.beta": 4.0, "model.latent_dim": 32, ...}."""
    short = short_keys(list(overrides))
    return ",".join(f"{short[key]}={format_value(v)}" for key, v in overrides.items()) or "base"


def validate_points(
    config: ml_collections.ConfigDict, points: Sequence[Mapping[str, Any]]
) -> list[ml_collections.ConfigDict]:
    """Every point's config (`config` plus its overrides), all checked before any is used.

    Raises SweepError naming the point (index and name) and the key for the first bad point, or
    two points with the same name (they would share a directory).
    """
    names = [point_name(point) for point in points]
    first_index = {}
    for i, name in enumerate(names):
        if name in first_index:
            raise SweepError(
                f"sweep points {first_index[name]} and {i} are both named {name!r}: "
                "each point needs its own overrides"
            )
        first_index[name] = i
    configs = []
    for i, (name, point) in enumerate(zip(names, points)):
        try:
            point_config = config_lib.apply_overrides(config, point)
            config_lib.validate(point_config)
        except config_lib.ConfigError as error:
            raise SweepError(f"sweep point {i} ({name}): {error}") from None
        configs.append(point_config)
    return configs


def check_index(index: int, num_points: int, source: str = "sweep index") -> int:
    """`index` if 0 <= index < num_points, else a SweepError that gives the valid range."""
    if not 0 <= index < num_points:
        raise SweepError(
            f"{source}={index} is out of range: this sweep has {num_points} points, "
            f"indices 0 to {num_points - 1} (list them with --sweep_list)"
        )
    return index


def resolve_index(
    flag_index: int | None, num_points: int, environ: Mapping[str, str] = os.environ
) -> int | None:
    """The point to run: --sweep_index if given, else $SLURM_ARRAY_TASK_ID if set, else None
    (all points). Raises SweepError for an index outside the sweep."""
    if flag_index is not None:
        return check_index(flag_index, num_points, "--sweep_index")
    task = environ.get("SLURM_ARRAY_TASK_ID")
    if task is None:
        return None
    try:
        index = int(task)
    except ValueError:
        raise SweepError(f"SLURM_ARRAY_TASK_ID={task!r} is not an integer") from None
    return check_index(index, num_points, "SLURM_ARRAY_TASK_ID")


# ---------------------------------------------------------------------------------------------
# Running


def _progress(workdir: Path, num_steps: int) -> str:
    step = checkpoints.latest_step(workdir)
    if checkpoints.is_finished(workdir, num_steps):
        return f"finished (step {step})"
    return "not started" if step is None else f"step {step} of {num_steps}"


def describe_points(
    config: ml_collections.ConfigDict, points: Sequence[Overrides], workdir: str | Path
) -> str:
    """One line per point: index, name and progress in `workdir` (what --sweep_list prints)."""
    configs = validate_points(config, points)
    workdir = Path(workdir)
    names = [point_name(point) for point in points]
    width = max(len(name) for name in names)
    lines = [f"{len(points)} sweep points, each in {workdir}/<name>:"]
    for i, (name, point_config) in enumerate(zip(names, configs)):
        progress = _progress(workdir / name, point_config.train.num_steps)
        lines.append(f"{i:4d}  {name:<{width}}  {progress}")
    lines.append(f"(SLURM: #SBATCH --array=0-{len(points) - 1})")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class PointOutcome:
    index: int
    name: str
    workdir: Path
    trained: bool  # False: it was already finished and skipped


def run_sweep(
    config: ml_collections.ConfigDict,
    points: Sequence[Overrides],
    workdir: str | Path,
    index: int | None = None,
    train_fn: Callable[[list[ml_collections.ConfigDict], list[Path]], Any] | None = None,
    vectorize: bool = False,
) -> list[PointOutcome]:
    """Trains every point (or only point `index`) in <workdir>/<point name>: one after another,
    or with `vectorize` as vectorised groups, each group the points whose configs differ only in
    train.VECTORIZED_KEYS (e.g. β and seed at one latent size), one group after another.

    Every point is validated before the first trains. Finished points are skipped, unfinished
    ones resume from their latest checkpoint. Each point's sweep_point.json gets its share of
    its group's training wall time (the group's time over its size, `group_size`), also when
    training fails or is interrupted.

    Args:
      config: the base config (the command line's, overrides included); not modified.
      points: override dicts, as from `load_sweep`.
      workdir: the sweep directory.
      index: run only this point.
      train_fn: train_fn(configs, workdirs) trains a group; default
        `vae_jax.train.train_points`.
      vectorize: train groups of points as one program.
    Returns:
      One outcome per point run or skipped, in index order.
    """
    from vae_jax import train  # the sweep bookkeeping itself needs no training code

    train_fn = train_fn or train.train_points
    configs = validate_points(config, points)
    names = [point_name(point) for point in points]
    workdir = Path(workdir)
    chief = jax.process_index() == 0  # on a multi-host pod, one process writes the records
    if chief:
        grid = [
            dict(index=i, name=name, overrides=point)
            for i, (name, point) in enumerate(zip(names, points))
        ]
        files.write_json(workdir / SWEEP_FILE, {"points": grid})
    selected = range(len(points)) if index is None else [check_index(index, len(points))]

    outcomes = []
    groups: dict[str, list[int]] = {}
    for i in selected:
        point_dir = workdir / names[i]
        if checkpoints.is_finished(point_dir, configs[i].train.num_steps):
            logging.info("Sweep point %d (of %d) %s: finished, skipping.", i, len(points), names[i])
            outcomes.append(PointOutcome(i, names[i], point_dir, trained=False))
            continue
        groups.setdefault(train.group_key(configs[i]) if vectorize else str(i), []).append(i)
    for group in groups.values():
        for i in group:
            logging.info(
                "Sweep point %d (of %d) %s: training in %s (%s)%s",
                i,
                len(points),
                names[i],
                workdir / names[i],
                _progress(workdir / names[i], configs[i].train.num_steps),
                f", vectorised with {len(group) - 1} other(s)" if len(group) > 1 else "",
            )
        _train_group(train_fn, [configs[i] for i in group], workdir, group, names, points, chief)
        outcomes += [PointOutcome(i, names[i], workdir / names[i], trained=True) for i in group]
    trained = sum(o.trained for o in outcomes)
    logging.info(
        "Sweep in %s: %d point(s) trained, %d already finished. Summary: "
        "python launch.py --mode=summarize --workdir=%s",
        workdir,
        trained,
        len(outcomes) - trained,
        workdir,
    )
    return sorted(outcomes, key=lambda outcome: outcome.index)


def _train_group(
    train_fn: Callable,
    configs: list[ml_collections.ConfigDict],
    workdir: Path,
    indices: list[int],
    names: list[str],
    points: Sequence[Overrides],
    chief: bool,
) -> None:
    """Trains the points `indices` with train_fn, adding each one's share of the wall time to
    its sweep_point.json."""
    records = {}
    for i in indices:
        path = workdir / names[i] / POINT_FILE
        previous = (files.read_json(path) or {}).get("wall_time_s", 0.0)
        records[i] = dict(
            name=names[i], index=i, overrides=points[i], wall_time_s=previous, group_size=1
        )
        if chief:
            files.write_json(path, records[i])
    start = time.perf_counter()
    try:
        train_fn(configs, [workdir / names[i] for i in indices])
    finally:
        if chief:
            share = (time.perf_counter() - start) / len(indices)
            for i, record in records.items():
                record.update(wall_time_s=record["wall_time_s"] + share, group_size=len(indices))
                files.write_json(workdir / names[i] / POINT_FILE, record)
