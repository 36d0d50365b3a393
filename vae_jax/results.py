"""Sweep results: read every point of a sweep directory back (config.json, metrics.jsonl,
eval.json, sweep_point.json) into results.csv, results.md and rate_distortion.png.

Only reads files (nothing compiles); missing and unfinished points are listed, not fatal.
Columns and their formats come from the metric table in report.py.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from vae_jax import checkpoints, figures, files, report
from vae_jax import config as config_lib
from vae_jax.sweep import POINT_FILE, SWEEP_FILE, Overrides, SweepError, format_value, short_keys
from vae_jax.writers import EVAL_FILE, METRICS_FILE, read_metrics

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PLOT_FILE = "rate_distortion.png"

# The last periodic evaluation's metrics (metrics.jsonl, validation split), then eval.json's
# (--mode=analyze, test split: "test/elbo" is eval.json's "elbo").
TRAINING_COLUMNS = (
    "validation/elbo",
    "validation/rate",
    "validation/distortion",
    "validation/elbo_bits_per_dim",
)
EVAL_COLUMNS = (
    "test/elbo",
    "test/iwae_nll",
    "test/bits_per_dim",
    "fid_t1",
    "fid_reconstructions",
    "active_units",
    "mig",
    "dci_disentanglement",
    "sap_score",
    "modularity",
    "beta_vae_score",
    "factor_vae_score",
)
COLUMNS = TRAINING_COLUMNS + EVAL_COLUMNS + ("wall_time_s",)


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


def known_points(workdir: Path) -> list[tuple[str, Overrides]]:
    """(name, overrides) of the grid in sweep.json, then of any other point directory."""
    grid = files.read_json(workdir / SWEEP_FILE) or {"points": []}
    points = [(p["name"], p["overrides"]) for p in grid["points"]]
    listed = {name for name, _ in points}
    for path in sorted(p for p in workdir.iterdir() if p.is_dir() and p.name not in listed):
        record = files.read_json(path / POINT_FILE)
        if record is not None or (path / config_lib.CONFIG_FILE).exists():
            points.append((path.name, (record or {}).get("overrides", {})))
    return points


def finished_points(workdir: str | Path) -> list[Path]:
    """The directories of the finished points of the sweep in `workdir`."""
    workdir = Path(workdir)
    point_dirs = [workdir / name for name, _ in known_points(workdir)]
    return [
        path
        for path in point_dirs
        if (path / config_lib.CONFIG_FILE).exists()
        and checkpoints.is_finished(path, config_lib.read_config_dict(path)["train"]["num_steps"])
    ]


def _read_point(point_dir: Path, name: str, overrides: Overrides) -> dict[str, Any]:
    """One results row: status, steps, final test metrics, eval.json keys, wall time."""
    row: dict[str, Any] = dict(name=name, overrides=overrides, status="missing", steps=None)
    row.update({key: None for key in COLUMNS})
    row.update({f"{key}_se": None for key in COLUMNS})
    row.update(num_steps=None, eval_step=None, beta=None, latent_dim=None, fid_protocol=None)
    row["wall_time_s"] = (files.read_json(point_dir / POINT_FILE) or {}).get("wall_time_s")
    if not (point_dir / config_lib.CONFIG_FILE).exists():
        return row
    config = config_lib.read_config_dict(point_dir)
    row.update(
        num_steps=config["train"]["num_steps"],
        beta=config["objective"]["beta"],
        latent_dim=config["model"]["latent_dim"],
        steps=checkpoints.latest_step(point_dir),
    )
    finished = checkpoints.is_finished(point_dir, row["num_steps"])
    row["status"] = "finished" if finished else "unfinished"
    if (point_dir / METRICS_FILE).exists():
        evals = [r for r in read_metrics(point_dir) if "validation/elbo" in r]
        if evals:
            row["eval_step"] = evals[-1]["step"]
            for key in TRAINING_COLUMNS:
                row[key], row[f"{key}_se"] = evals[-1].get(key), evals[-1].get(f"{key}_se")
    analysis = files.read_json(point_dir / EVAL_FILE) or {}
    if analysis.get("step") != row["steps"]:  # an evaluation of an earlier checkpoint
        analysis = {}
    for key in EVAL_COLUMNS:
        name = key.removeprefix("test/")
        for suffix in ("", "_se"):
            value = analysis.get(name + suffix)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key + suffix] = float(value)
    row["fid_protocol"] = analysis.get("fid_protocol")
    return row


def _cell(row: dict[str, Any], key: str) -> str:
    """A point's value of `key`, ± its standard error over examples where there is one."""
    text = report.format_metric(key, row[key])
    if text and row[f"{key}_se"] is not None:
        text += f" ± {report.format_metric(key, row[f'{key}_se'])}"
    return text


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


def _mean_std(key: str, values: list[float]) -> str:
    if not values:
        return ""
    mean = report.format_metric(key, float(np.mean(values)))
    if len(values) == 1:
        return mean
    return f"{mean} ± {report.format_metric(key, float(np.std(values, ddof=1)))}"


def _write_markdown(summary: Summary, workdir: Path) -> None:
    rows, keys = summary.rows, summary.override_keys
    short = short_keys(keys)
    present = [row for row in rows if row["status"] != "missing"]
    # Only columns some point has, so a sweep without --mode=analyze gets no empty columns.
    columns = [c for c in COLUMNS if any(row[c] is not None for row in present)]
    counts = {s: sum(row["status"] == s for row in rows) for s in ("finished", "unfinished")}
    missing = len(rows) - counts["finished"] - counts["unfinished"]
    parts = [
        f"# Sweep results: {workdir.name}",
        f"{len(rows)} points: {counts['finished']} finished, {counts['unfinished']} unfinished, "
        f"{missing} missing. Nats per example (ELBO = −(rate + distortion)) ± their standard "
        "error over examples: validation numbers from each point's last periodic evaluation, "
        "test numbers from --mode=analyze (eval.json); wall time is training time summed over "
        "resumes.",
        "## Per point",
    ]
    table = []
    for row in present:
        cells = [format_value(row["overrides"][k]) if k in row["overrides"] else "" for k in keys]
        steps = "" if row["steps"] is None else str(row["steps"])
        if row["status"] == "unfinished":
            steps = f"{steps or 0} of {row['num_steps']}"
        table.append(cells + [steps] + [_cell(row, c) for c in columns])
    headers = [short[k] for k in keys] + ["steps"] + [report.header(c) for c in columns]
    parts.append(report.markdown_table(headers, table, len(keys)))

    group_keys = [k for k in keys if not _is_seed(k)]
    groups = _grouped(rows, group_keys)
    if groups:
        table = []
        for values, members in groups:
            cells = [values.get(k, "") for k in group_keys] + [str(len(members))]
            for key in columns:
                cells.append(_mean_std(key, [m[key] for m in members if m[key] is not None]))
            table.append(cells)
        seeds = "seeds" if any(_is_seed(k) for k in keys) else "points"
        parts.append(f"## Mean ± std over {seeds} (finished points)")
        headers = [short[k] for k in group_keys] + ["n"] + [report.header(c) for c in columns]
        parts.append(report.markdown_table(headers, table, len(group_keys)))

    protocols = sorted({row["fid_protocol"] for row in present if row["fid_protocol"]})
    parts += [f"FID and KID: {protocol}" for protocol in protocols]
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
    files.write_text(summary.markdown_path, "\n\n".join(parts) + "\n")


def _csv_name(key: str) -> str:
    return key.replace("/", "_")  # test/elbo -> test_elbo


def _write_csv(summary: Summary) -> None:
    """Every column for every point (blank where absent), override columns by dotted key."""
    fields = ["name", *summary.override_keys, "status", "steps", "num_steps", "eval_step"]
    values = [key + suffix for key in COLUMNS for suffix in ("", "_se")]
    with open(summary.csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields + [_csv_name(key) for key in values])
        writer.writeheader()
        for row in summary.rows:
            cells = {k: row.get(k) for k in fields if k not in summary.override_keys}
            for k in summary.override_keys:
                cells[k] = format_value(row["overrides"][k]) if k in row["overrides"] else None
            cells.update({_csv_name(key): row[key] for key in values})
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
    points = known_points(workdir)
    if not points:
        raise SweepError(
            f"no sweep points in {workdir}: expected {SWEEP_FILE} or <point>/{POINT_FILE} "
            "(written by launch.py --sweep)"
        )
    rows = [_read_point(workdir / name, name, overrides) for name, overrides in points]
    override_keys = list(dict.fromkeys(k for _, overrides in points for k in overrides))

    plotted = [r for r in rows if r["status"] == "finished" and r["validation/rate"] is not None]
    plot_path = None
    if plotted:
        plot_path = figures.rate_distortion_plot(
            [r["validation/rate"] for r in plotted],
            [r["validation/distortion"] for r in plotted],
            [r["beta"] for r in plotted],
            [r["latent_dim"] for r in plotted],
            workdir / PLOT_FILE,
            title=f"Rate-distortion, validation set: {workdir.name}",
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
