"""Sweeps: expand an experiment's `get_sweep()` grid, run one or all points, summarize the results.

A sweep is a list of override dicts, one per run, whose keys are dotted config paths:
`[{"objective.beta": 4.0, "model.latent_dim": 32, "seed": 0}, ...]`. Point i trains in
`<workdir>/<point name>` (`beta=4,latent_dim=32,seed=0`) with the command-line config plus its
overrides. A point whose latest checkpoint has reached `train.num_steps` is skipped; an interrupted
one resumes. `summarize(workdir)` reads every point back into results.csv, results.md and
rate_distortion.png. Listing, skipping and summarizing only read files: nothing compiles.

Files a sweep adds to the workdirs of train.py:

    <workdir>/sweep.json               every point's index, name and overrides
    <workdir>/<point>/sweep_point.json name, index, overrides, wall_time_s (summed over resumes)
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.util
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from vae_jax import checkpoints, figures
from vae_jax import config as config_lib
from vae_jax.metrics import METRICS_FILE, read_metrics

SWEEP_FILE = "sweep.json"
POINT_FILE = "sweep_point.json"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PLOT_FILE = "rate_distortion.png"

# Keys of <point>/eval.json (written by --mode=analyze) that become columns when present.
EVAL_KEYS = ("iwae_nll", "bits_per_dim", "active_units", "mig", "dci_disentanglement")

Overrides = dict[str, Any]


class SweepError(config_lib.ConfigError):
    """A sweep that cannot run or be read; the message names the point, key or file at fault."""


# ---------------------------------------------------------------------------------------------
# The grid


def load_sweep(config_path: str | Path) -> list[Overrides]:
    """The override dicts of `get_sweep()` in the experiment file at `config_path`."""
    path = Path(config_path)
    spec = importlib.util.spec_from_file_location(f"_sweep_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SweepError(f"{path} is not a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_sweep", None)):
        raise SweepError(
            f"{path} defines no get_sweep(): add one returning a list of override dicts, e.g. "
            '[{"objective.beta": b, "seed": s} for b in (1, 4) for s in (0, 1)]'
        )
    points = [dict(point) for point in module.get_sweep()]
    if not points:
        raise SweepError(f"{path}: get_sweep() returned no points")
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


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of `config` with each dotted key set to its value; `config` is left unchanged.

    Raises ConfigError naming the key if it is not a config key or the value has the wrong type
    (a string for a float, a float for an int, a bool for a number).
    """
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        *path, name = key.split(".")
        section = config
        for depth, part in enumerate(path):
            if part not in section or not isinstance(section[part], ml_collections.ConfigDict):
                raise config_lib.ConfigError(
                    f"{key} is not a config key: {'.'.join(path[: depth + 1])} is not a section"
                )
            section = section[part]
        if name not in section:
            where = ".".join(path) or "the config"
            raise config_lib.ConfigError(
                f"{key} is not a config key; {where} has: {', '.join(sorted(section.keys()))}"
            )
        if isinstance(section[name], ml_collections.ConfigDict):
            raise config_lib.ConfigError(f"{key} is a section; sweep its keys ({key}.<name>)")
        expected = section.get_type(name)
        # bool is an int to Python, so ConfigDict would take True for latent_dim.
        wrong_bool = expected is not type(None) and (expected is bool) != isinstance(value, bool)
        try:
            if wrong_bool:
                raise TypeError
            section[name] = value
        except TypeError:
            raise config_lib.ConfigError(
                f"{key}={value!r} is not valid: must be of type {expected.__name__}"
            ) from None
    return config


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
            point_config = apply_overrides(config, point)
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
# Progress on disk


def latest_checkpoint_step(workdir: str | Path) -> int | None:
    """The highest finalized step under <workdir>/checkpoints/, or None.

    orbax writes each step into a temporary directory and renames it to <step>/ when complete,
    so a name made of digits is a finished checkpoint.
    """
    directory = Path(workdir) / checkpoints.CHECKPOINT_DIR
    if not directory.is_dir():
        return None
    steps = [int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(steps, default=None)


def is_finished(workdir: str | Path, num_steps: int) -> bool:
    """Whether the run in `workdir` has a config.json and a checkpoint at or past `num_steps`."""
    step = latest_checkpoint_step(workdir)
    return (
        (Path(workdir) / checkpoints.CONFIG_FILE).exists()
        and step is not None
        and (step >= num_steps)
    )


def finished_points(workdir: str | Path) -> list[Path]:
    """The directories of the finished points of the sweep in `workdir`."""
    workdir = Path(workdir)
    point_dirs = [workdir / name for name, _ in _known_points(workdir)]
    return [
        path
        for path in point_dirs
        if (path / checkpoints.CONFIG_FILE).exists()
        and is_finished(path, checkpoints.read_config_dict(path)["train"]["num_steps"])
    ]


def _progress(workdir: Path, num_steps: int) -> str:
    step = latest_checkpoint_step(workdir)
    if is_finished(workdir, num_steps):
        return f"finished (step {step})"
    return "not started" if step is None else f"step {step} of {num_steps}"


def _write_json(path: Path, record: Any) -> None:
    """Writes atomically, so array jobs writing the same file never leave it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Running


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
    train_fn: Callable[[ml_collections.ConfigDict, Path], Any] | None = None,
) -> list[PointOutcome]:
    """Trains every point (or only point `index`) one after another in <workdir>/<point name>.

    Every point is validated before the first trains. Finished points are skipped, unfinished
    ones resume from their latest checkpoint. Each point's training wall time is added to its
    sweep_point.json, also when training fails or is interrupted.

    Args:
      config: the base config (the command line's, overrides included); not modified.
      points: override dicts, as from `load_sweep`.
      workdir: the sweep directory.
      index: run only this point.
      train_fn: train_fn(config, workdir); default `vae_jax.train.train_and_evaluate`.
    Returns:
      One outcome per point run or skipped, in order.
    """
    if train_fn is None:
        from vae_jax import train  # the sweep bookkeeping itself needs no training code

        train_fn = train.train_and_evaluate
    configs = validate_points(config, points)
    names = [point_name(point) for point in points]
    workdir = Path(workdir)
    chief = jax.process_index() == 0  # on a multi-host pod, one process writes the records
    if chief:
        grid = [
            dict(index=i, name=name, overrides=point)
            for i, (name, point) in enumerate(zip(names, points))
        ]
        _write_json(workdir / SWEEP_FILE, {"points": grid})
    selected = range(len(points)) if index is None else [check_index(index, len(points))]

    outcomes = []
    for i in selected:
        point_dir = workdir / names[i]
        num_steps = configs[i].train.num_steps
        if is_finished(point_dir, num_steps):
            logging.info("Sweep point %d (of %d) %s: finished, skipping.", i, len(points), names[i])
            outcomes.append(PointOutcome(i, names[i], point_dir, trained=False))
            continue
        logging.info(
            "Sweep point %d (of %d) %s: training in %s (%s)",
            i,
            len(points),
            names[i],
            point_dir,
            _progress(point_dir, num_steps),
        )
        record_path = point_dir / POINT_FILE
        previous = (_read_json(record_path) or {}).get("wall_time_s", 0.0)
        record = dict(name=names[i], index=i, overrides=points[i], wall_time_s=previous)
        if chief:
            _write_json(record_path, record)
        start = time.perf_counter()
        try:
            train_fn(configs[i], point_dir)
        finally:
            if chief:
                record["wall_time_s"] = previous + time.perf_counter() - start
                _write_json(record_path, record)
        outcomes.append(PointOutcome(i, names[i], point_dir, trained=True))
    trained = sum(o.trained for o in outcomes)
    logging.info(
        "Sweep in %s: %d point(s) trained, %d already finished. Summary: "
        "python launch.py --mode=summarize --workdir=%s",
        workdir,
        trained,
        len(outcomes) - trained,
        workdir,
    )
    return outcomes


# ---------------------------------------------------------------------------------------------
# Summarizing

# (row key, markdown header, format of one number) for the numeric columns, in table order.
# Test-set numbers are in nats per example; the eval.json keys come from --mode=analyze.
METRIC_COLUMNS = (
    ("test_elbo", "test ELBO", ".2f"),
    ("test_rate", "rate", ".2f"),
    ("test_distortion", "distortion", ".2f"),
    ("test_bits_per_dim", "ELBO bits/dim", ".3f"),
    ("iwae_nll", "IWAE NLL", ".2f"),
    ("bits_per_dim", "bits/dim", ".3f"),
    ("active_units", "active units", ".1f"),
    ("mig", "MIG", ".3f"),
    ("dci_disentanglement", "DCI dis.", ".3f"),
    ("wall_time_s", "wall time", "duration"),
)


@dataclasses.dataclass
class Summary:
    """What `summarize` found and wrote. rows: one dict per point, in sweep order."""

    rows: list[dict[str, Any]]
    override_keys: list[str]
    csv_path: Path
    markdown_path: Path
    plot_path: Path | None  # None when no point has finished

    @property
    def incomplete(self) -> list[str]:
        return [row["name"] for row in self.rows if row["status"] != "finished"]


def _known_points(workdir: Path) -> list[tuple[str, Overrides]]:
    """(name, overrides) of the grid in sweep.json, then of any other point directory."""
    grid = _read_json(workdir / SWEEP_FILE) or {"points": []}
    points = [(p["name"], p["overrides"]) for p in grid["points"]]
    listed = {name for name, _ in points}
    for path in sorted(p for p in workdir.iterdir() if p.is_dir() and p.name not in listed):
        record = _read_json(path / POINT_FILE)
        if record is not None or (path / checkpoints.CONFIG_FILE).exists():
            points.append((path.name, (record or {}).get("overrides", {})))
    return points


def _read_point(point_dir: Path, name: str, overrides: Overrides) -> dict[str, Any]:
    """One results row: status, steps, final test metrics, eval.json keys, wall time."""
    row: dict[str, Any] = dict(name=name, overrides=overrides, status="missing", steps=None)
    row.update({key: None for key, _, _ in METRIC_COLUMNS})
    row.update(num_steps=None, eval_step=None, beta=None, latent_dim=None)
    record = _read_json(point_dir / POINT_FILE) or {}
    row["wall_time_s"] = record.get("wall_time_s")
    if not (point_dir / checkpoints.CONFIG_FILE).exists():
        return row
    config = checkpoints.read_config_dict(point_dir)
    row.update(
        num_steps=config["train"]["num_steps"],
        beta=config["objective"]["beta"],
        latent_dim=config["model"]["latent_dim"],
        steps=latest_checkpoint_step(point_dir),
    )
    row["status"] = "finished" if is_finished(point_dir, row["num_steps"]) else "unfinished"
    if (point_dir / METRICS_FILE).exists():
        evals = [r for r in read_metrics(point_dir) if "test/elbo" in r]
        if evals:
            final = evals[-1]
            row["eval_step"] = final["step"]
            for key in ("elbo", "rate", "distortion", "bits_per_dim"):
                row[f"test_{key}"] = final.get(f"test/{key}")
    analysis = _read_json(point_dir / checkpoints.EVAL_FILE) or {}
    if analysis.get("step") != row["steps"]:  # an evaluation of an earlier checkpoint
        analysis = {}
    for key in EVAL_KEYS:
        value = analysis.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = float(value)
    return row


def _format_number(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if fmt != "duration":
        return format(value, fmt)
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _markdown_table(headers: list[str], rows: list[list[str]], numeric_from: int) -> str:
    """A GitHub table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def _grouped(
    rows: list[dict[str, Any]], keys: list[str]
) -> list[tuple[dict[str, str], list[dict]]]:
    """Finished rows grouped by their non-seed overrides, in order of first appearance."""
    groups: dict[tuple, tuple[dict[str, str], list[dict]]] = {}
    for row in rows:
        if row["status"] != "finished":
            continue
        values = {k: format_value(row["overrides"][k]) for k in keys if k in row["overrides"]}
        groups.setdefault(tuple(values.items()), (values, []))[1].append(row)
    return list(groups.values())


def _mean_std(values: list[float], fmt: str) -> str:
    if not values:
        return ""
    mean = _format_number(float(np.mean(values)), fmt)
    if len(values) == 1:
        return mean
    return f"{mean} ± {_format_number(float(np.std(values, ddof=1)), fmt)}"


def _write_markdown(summary: Summary, workdir: Path) -> None:
    rows, keys = summary.rows, summary.override_keys
    short = short_keys(keys)
    present = [row for row in rows if row["status"] != "missing"]
    # Only columns some point has, so a sweep without --mode=analyze gets no empty columns.
    columns = [c for c in METRIC_COLUMNS if any(row[c[0]] is not None for row in present)]
    counts = {s: sum(row["status"] == s for row in rows) for s in ("finished", "unfinished")}
    missing = len(rows) - counts["finished"] - counts["unfinished"]
    parts = [
        f"# Sweep results: {workdir.name}",
        f"{len(rows)} points: {counts['finished']} finished, {counts['unfinished']} unfinished, "
        f"{missing} missing. Test-set numbers in nats per example (ELBO = −(rate + distortion)), "
        "at each point's last evaluation; wall time is training time summed over resumes.",
        "## Per point",
    ]
    table = []
    for row in present:
        cells = [format_value(row["overrides"][k]) if k in row["overrides"] else "" for k in keys]
        steps = "" if row["steps"] is None else str(row["steps"])
        if row["status"] == "unfinished":
            steps = f"{steps or 0} of {row['num_steps']}"
        table.append(cells + [steps] + [_format_number(row[c[0]], c[2]) for c in columns])
    headers = [short[k] for k in keys] + ["steps"] + [c[1] for c in columns]
    parts.append(_markdown_table(headers, table, len(keys)))

    group_keys = [k for k in keys if not _is_seed(k)]
    groups = _grouped(rows, group_keys)
    if groups:
        table = []
        for values, members in groups:
            cells = [values.get(k, "") for k in group_keys] + [str(len(members))]
            for key, _, fmt in columns:
                cells.append(_mean_std([m[key] for m in members if m[key] is not None], fmt))
            table.append(cells)
        seeds = "seeds" if any(_is_seed(k) for k in keys) else "points"
        parts.append(f"## Mean ± std over {seeds} (finished points)")
        headers = [short[k] for k in group_keys] + ["n"] + [c[1] for c in columns]
        parts.append(_markdown_table(headers, table, len(group_keys)))

    if summary.plot_path is not None:
        parts.append(f"![rate-distortion]({summary.plot_path.name})")
    incomplete = [row for row in rows if row["status"] != "finished"]
    if incomplete:
        parts.append("## Missing or unfinished")
        lines = []
        for row in incomplete:
            if row["status"] == "missing":
                lines.append(f"- `{row['name']}`: not started")
            else:
                lines.append(f"- `{row['name']}`: step {row['steps'] or 0} of {row['num_steps']}")
        parts.append("\n".join(lines))
    summary.markdown_path.write_text("\n\n".join(parts) + "\n")


def _write_csv(summary: Summary) -> None:
    """Every column for every point (blank where absent), override columns by dotted key."""
    fields = ["name", *summary.override_keys, "status", "steps", "num_steps", "eval_step"]
    fields += [key for key, _, _ in METRIC_COLUMNS]
    with open(summary.csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in summary.rows:
            cells = {k: row.get(k) for k in fields if k not in summary.override_keys}
            for k in summary.override_keys:
                cells[k] = format_value(row["overrides"][k]) if k in row["overrides"] else None
            writer.writerow({k: "" if v is None else v for k, v in cells.items()})


def summarize(workdir: str | Path) -> Summary:
    """Reads every point of the sweep in `workdir` and writes results.csv, results.md and
    rate_distortion.png there. Missing and unfinished points are listed, not fatal.

    Returns:
      The rows (one per point, in sweep order) and the paths written.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise SweepError(f"{workdir} does not exist: run the sweep first (launch.py --sweep)")
    points = _known_points(workdir)
    if not points:
        raise SweepError(
            f"no sweep points in {workdir}: expected {SWEEP_FILE} or <point>/{POINT_FILE} "
            "(written by launch.py --sweep)"
        )
    rows = [_read_point(workdir / name, name, overrides) for name, overrides in points]
    override_keys = list(dict.fromkeys(k for _, overrides in points for k in overrides))

    plotted = [r for r in rows if r["status"] == "finished" and r["test_rate"] is not None]
    plot_path = None
    if plotted:
        plot_path = figures.rate_distortion_plot(
            [r["test_rate"] for r in plotted],
            [r["test_distortion"] for r in plotted],
            [r["beta"] for r in plotted],
            [r["latent_dim"] for r in plotted],
            workdir / PLOT_FILE,
            title=f"Rate-distortion, test set: {workdir.name}",
        )
    summary = Summary(rows, override_keys, workdir / RESULTS_CSV, workdir / RESULTS_MD, plot_path)
    _write_csv(summary)
    _write_markdown(summary, workdir)
    if summary.incomplete:
        shown = summary.incomplete[:5] + (["..."] if len(summary.incomplete) > 5 else [])
        logging.warning(
            "%d of %d sweep points are missing or unfinished (listed in %s): %s",
            len(summary.incomplete),
            len(rows),
            summary.markdown_path,
            ", ".join(shown),
        )
    return summary
