"""Sweeps: point names, validation before training, one or all points, skip and resume, summary."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import base, celeba, dsprites, shapes, shapes3d
from vae_jax import checkpoints, preemption, results, sweep
from vae_jax import config as config_lib
from vae_jax.sweep import SweepError, point_name

REPO = Path(__file__).resolve().parents[1]
TINY_SWEEP = [
    {"objective.beta": b, "model.latent_dim": d, "seed": 0} for b in (1, 4) for d in (2, 4)
]


def tiny_config(num_steps=10):
    config = shapes.get_config("tiny")
    config.train.update(
        num_steps=num_steps, log_every=num_steps, eval_every=num_steps, checkpoint_every=num_steps
    )
    return config


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after `heading` in results.md."""
    section = markdown.split(heading, 1)[1].split("\n\n")[1]
    return [
        [cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()[2:]
    ]


def test_point_name_uses_last_key_component_and_compact_values():
    assert (
        point_name({"objective.beta": 4.0, "model.latent_dim": 32, "seed": 0})
        == "beta=4,latent_dim=32,seed=0"
    )
    assert point_name({"objective.beta": 0.5, "train.learning_rate": 1e-4}) == (
        "beta=0.5,learning_rate=0.0001"
    )
    assert (
        point_name({"model.channels": (8, 16), "dataset.name": "a/b"}) == "channels=8-16,name=a_b"
    )


def test_point_name_falls_back_to_dotted_key_when_last_components_clash():
    name = point_name({"train.batch_size": 32, "eval.batch_size": 64, "seed": 1})
    assert name == "train.batch_size=32,eval.batch_size=64,seed=1"


@pytest.mark.parametrize(
    "module, latent_dims, size", [(shapes, {4, 10, 32}, 45), (celeba, {16, 32, 64, 128}, 60)]
)
def test_experiment_sweeps_are_beta_by_latent_by_seed_grids(module, latent_dims, size):
    points = sweep.load_sweep(module.__file__)
    configs = sweep.validate_points(module.get_config(), points)
    assert len(configs) == size == len({point_name(p) for p in points})
    assert {c.objective.beta for c in configs} == {1.0, 2.0, 4.0, 8.0, 16.0}
    assert {c.model.latent_dim for c in configs} == latent_dims
    assert {c.seed for c in configs} == {0, 1, 2}
    assert point_name(points[-1]) == f"beta=16,latent_dim={max(latent_dims)},seed=2"


@pytest.mark.parametrize("method", base.METHODS)
def test_a_method_variant_sweeps_that_methods_study_grid(method):
    points = sweep.load_sweep(f"{shapes.__file__}:study,{method}")
    configs = sweep.validate_points(shapes.get_config(f"study,{method}"), points)
    assert len(configs) == 18 and {c.seed for c in configs} == {0, 1, 2}
    assert {c.objective.kind for c in configs} == {method}
    assert {c.train.num_steps for c in configs} == {300_000}
    hyperparameters = {tuple(sorted(p.items()))[:-1] for p in points}
    assert hyperparameters == {tuple(sorted(p.items())) for p in base.STUDY_GRIDS[method]}


@pytest.mark.parametrize("module", [dsprites, shapes3d])
def test_the_factor_datasets_sweep_beta_vae_without_a_method(module):
    points = sweep.load_sweep(module.__file__)
    assert points == base.study_sweep("beta_vae")
    configs = sweep.validate_points(module.get_config(), points)
    assert {c.objective.beta for c in configs} == {1.0, 2.0, 4.0, 6.0, 8.0, 16.0}


def test_config_file_without_get_sweep_fails_naming_it():
    path = REPO / "experiments" / "mnist.py"
    with pytest.raises(SweepError, match=r"mnist.py defines no get_sweep\(arg\)"):
        sweep.load_sweep(path)


def test_apply_overrides_converts_types_and_leaves_the_base_config_alone():
    base = tiny_config()
    point = config_lib.apply_overrides(
        base, {"objective.beta": 4, "model.latent_dim": 2, "seed": 3}
    )
    assert (point.objective.beta, point.model.latent_dim, point.seed) == (4.0, 2, 3)
    assert isinstance(point.objective.beta, float)
    assert (base.objective.beta, base.model.latent_dim, base.seed) == (4.0, 4, 0)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"objective.betta": 4.0}, "objective.betta is not a config key; objective has: beta,"),
        ({"objective.beta": "four"}, "objective.beta='four' is not valid: must be of type float"),
        ({"objective.beta": -1.0}, "objective.beta=-1.0 is not valid: must be >= 0"),
        ({"model.latent_dim": 4.5}, "model.latent_dim=4.5 is not valid: must be of type int"),
        ({"model.latent_dim": True}, "model.latent_dim=True is not valid: must be of type int"),
        ({"model": 3}, "model is a section"),
        ({"modle.latent_dim": 3}, "modle.latent_dim is not a config key: modle is not a section"),
    ],
)
def test_invalid_point_fails_before_anything_trains_naming_point_and_key(tmp_path, bad, message):
    points = [{"seed": 0}, {"seed": 1}, {"seed": 2, **bad}]
    trained = []
    with pytest.raises(
        SweepError, match=re.escape("sweep point 2 (seed=2,") + ".*" + re.escape(message)
    ):
        sweep.run_sweep(tiny_config(), points, tmp_path, train_fn=lambda c, w: trained.extend(w))
    assert trained == []


def test_two_points_with_the_same_name_are_rejected():
    with pytest.raises(SweepError, match="sweep points 0 and 1 are both named 'beta=4'"):
        sweep.validate_points(tiny_config(), [{"objective.beta": 4}, {"objective.beta": 4.0}])


def test_sweep_index_comes_from_the_flag_then_slurm_and_must_be_in_range():
    assert sweep.resolve_index(None, 4, environ={}) is None
    assert sweep.resolve_index(None, 4, environ={"SLURM_ARRAY_TASK_ID": "3"}) == 3
    assert sweep.resolve_index(1, 4, environ={"SLURM_ARRAY_TASK_ID": "3"}) == 1
    with pytest.raises(
        SweepError, match="--sweep_index=4 is out of range: this sweep has 4 points, indices 0 to 3"
    ):
        sweep.resolve_index(4, 4, environ={})
    with pytest.raises(SweepError, match="SLURM_ARRAY_TASK_ID=7 is out of range"):
        sweep.resolve_index(None, 4, environ={"SLURM_ARRAY_TASK_ID": "7"})


def fake_train_in_halves(calls, fail_first=False):
    """A train_fn that writes config.json and advances the checkpoint by half of num_steps."""

    def train_fn(configs, workdirs):
        calls.append([workdir.name for workdir in workdirs])
        for config, workdir in zip(configs, workdirs):
            config_lib.write_config(workdir, config)
            step = (checkpoints.latest_step(workdir) or 0) + config.train.num_steps // 2
            (workdir / "checkpoints" / str(step)).mkdir(parents=True)
        if fail_first and len(calls) == 1:  # preempted half way: the sweep must stop too
            raise preemption.StoppedBySignal("stopped by SIGTERM")

    return train_fn


def test_interrupted_point_resumes_and_its_wall_time_accumulates(tmp_path):
    calls = []
    train_fn = fake_train_in_halves(calls, fail_first=True)
    points = [{"seed": 0}, {"seed": 1}]
    with pytest.raises(preemption.StoppedBySignal):
        sweep.run_sweep(tiny_config(), points, tmp_path, train_fn=train_fn)
    assert calls == [["seed=0"]]
    record = json.loads((tmp_path / "seed=0" / sweep.POINT_FILE).read_text())
    assert record["overrides"] == {"seed": 0} and record["wall_time_s"] > 0
    first_time = record["wall_time_s"]

    sweep.run_sweep(tiny_config(), points, tmp_path, train_fn=train_fn)  # seed=0 at 10 of 20
    sweep.run_sweep(tiny_config(), points, tmp_path, train_fn=train_fn)
    outcomes = sweep.run_sweep(tiny_config(), points, tmp_path, train_fn=train_fn)
    assert calls == [["seed=0"], ["seed=0"], ["seed=1"], ["seed=1"]]
    assert [o.trained for o in outcomes] == [False, False]
    record = json.loads((tmp_path / "seed=0" / sweep.POINT_FILE).read_text())
    assert record["wall_time_s"] > first_time

    # More steps on the command line: every point is unfinished again and resumes.
    sweep.run_sweep(tiny_config(num_steps=30), points, tmp_path, train_fn=train_fn)
    assert calls[4:] == [["seed=0"], ["seed=1"]]


def test_vectorize_groups_the_points_that_differ_only_in_scalar_settings(tmp_path):
    calls = []
    points = [
        {"objective.beta": b, "model.latent_dim": d, "seed": s}
        for d in (2, 3)
        for b in (1.0, 4.0)
        for s in (0, 1)
    ]
    config = tiny_config()
    outcomes = sweep.run_sweep(
        config, points, tmp_path, train_fn=fake_train_in_halves(calls), vectorize=True
    )
    assert (
        calls
        == [
            [sweep.point_name(p) for p in points[:4]],  # latent_dim=2: β and seed vary
            [sweep.point_name(p) for p in points[4:]],
        ]
    )
    assert [o.index for o in outcomes] == list(range(8))
    record = json.loads((tmp_path / sweep.point_name(points[5]) / sweep.POINT_FILE).read_text())
    assert record["group_size"] == 4 and record["wall_time_s"] > 0
    # A point already past the others is finished and left out of its group.
    sweep.run_sweep(config, points, tmp_path, index=0, train_fn=fake_train_in_halves(calls))
    sweep.run_sweep(config, points, tmp_path, train_fn=fake_train_in_halves(calls), vectorize=True)
    assert calls[2:] == [
        [sweep.point_name(points[0])],
        [sweep.point_name(p) for p in points[1:4]],
        [sweep.point_name(p) for p in points[4:]],
    ]


@pytest.mark.slow
def test_tiny_shapes_sweep_one_point_then_all_then_nothing_and_a_summary(tmp_path):
    config = tiny_config()
    outcomes = sweep.run_sweep(config, TINY_SWEEP, tmp_path, index=2)
    assert [(o.index, o.name, o.trained) for o in outcomes] == [
        (2, "beta=4,latent_dim=2,seed=0", True)
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "beta=4,latent_dim=2,seed=0"
    ]

    outcomes = sweep.run_sweep(config, TINY_SWEEP, tmp_path)
    assert [o.trained for o in outcomes] == [True, True, False, True]
    metrics_before = {o.name: (o.workdir / "metrics.jsonl").read_text() for o in outcomes}

    outcomes = sweep.run_sweep(config, TINY_SWEEP, tmp_path)
    assert [o.trained for o in outcomes] == [False] * 4
    assert {o.name: (o.workdir / "metrics.jsonl").read_text() for o in outcomes} == metrics_before

    summary = results.summarize(tmp_path)
    assert [r["name"] for r in summary.rows] == [point_name(p) for p in TINY_SWEEP]
    for row in summary.rows:
        assert row["status"] == "finished" and row["steps"] == 10, row
        np.testing.assert_allclose(
            row["validation/elbo"],
            -(row["validation/rate"] + row["validation/distortion"]),
            rtol=1e-5,
        )
        assert row["wall_time_s"] > 0
    with open(tmp_path / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["objective.beta"], r["model.latent_dim"]) for r in csv_rows] == [
        ("1", "2"),
        ("1", "4"),
        ("4", "2"),
        ("4", "4"),
    ]
    markdown = (tmp_path / "results.md").read_text()
    per_point = table_rows(markdown, "## Per point")
    assert len(per_point) == 4 and all(row[3] == "10" for row in per_point), markdown
    assert len(table_rows(markdown, "## Mean ± std over seeds")) == 4
    assert "Missing or unfinished" not in markdown
    assert (tmp_path / "rate_distortion.png").read_bytes()[:4] == b"\x89PNG"


def fake_point(
    workdir,
    overrides,
    step,
    num_steps=10,
    validation=None,
    analysis=None,
    wall=None,
    eval_step=None,
):
    """A point directory as train.py, --mode=analyze (of checkpoint `eval_step`, default the
    latest) and run_sweep leave it."""
    point_dir = workdir / point_name(overrides)
    config = config_lib.apply_overrides(tiny_config(num_steps), overrides)
    config_lib.write_config(point_dir, config)
    (point_dir / "checkpoints" / str(step)).mkdir(parents=True)
    if validation is not None:
        rate, distortion = validation
        record = {"step": step, "validation/elbo": -(rate + distortion)}
        record.update({"validation/rate": rate, "validation/distortion": distortion})
        (point_dir / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    if analysis is not None:
        record = {"step": step if eval_step is None else eval_step, **analysis}
        (point_dir / "eval.json").write_text(json.dumps(record))
    if wall is not None:
        (point_dir / sweep.POINT_FILE).write_text(json.dumps({"wall_time_s": wall}))


def test_summary_averages_seeds_reads_eval_json_and_lists_missing_and_unfinished(tmp_path):
    points = [{"objective.beta": b, "seed": s} for b in (1, 4) for s in (0, 1)]
    grid = [dict(index=i, name=point_name(p), overrides=p) for i, p in enumerate(points)]
    (tmp_path / sweep.SWEEP_FILE).write_text(json.dumps({"points": grid}))
    fake_point(
        tmp_path,
        points[0],
        10,
        validation=(10.0, 90.0),
        analysis={
            "iwae_nll": 95.0,
            "iwae_nll_se": 0.5,
            "mig": 0.1,
            "fid_t1": 42.5,
            "fid_protocol": "the test protocol",
        },
        wall=60.0,
    )
    fake_point(tmp_path, points[1], 10, validation=(12.0, 88.0), analysis={"mig": 0.3}, wall=120.0)
    fake_point(tmp_path, points[2], 5, validation=(5.0, 100.0))  # interrupted at step 5 of 10

    summary = results.summarize(tmp_path)
    assert [r["status"] for r in summary.rows] == ["finished", "finished", "unfinished", "missing"]
    assert summary.incomplete == ["beta=4,seed=0", "beta=4,seed=1"]
    assert summary.rows[1]["test/iwae_nll"] is None and summary.rows[1]["mig"] == 0.3

    with open(tmp_path / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 4
    assert {"test_elbo", "test_iwae_nll", "test_iwae_nll_se", "mig"} <= set(csv_rows[0])
    assert csv_rows[0]["test_iwae_nll"] == "95.0" and csv_rows[1]["test_iwae_nll"] == ""
    assert csv_rows[0]["dci_disentanglement"] == "" and csv_rows[3]["status"] == "missing"

    markdown = (tmp_path / "results.md").read_text()
    per_point = table_rows(markdown, "## Per point")
    assert [row[:3] for row in per_point] == [
        ["1", "0", "10"],
        ["1", "1", "10"],
        ["4", "0", "5 of 10"],
    ]
    assert "95.00 ± 0.50" in per_point[0]  # a point's value ± its standard error over examples
    header = markdown.split("## Per point")[1].split("\n\n")[1].splitlines()[0]
    assert "IWAE NLL" in header and "MIG" in header and "DCI" not in header
    grouped = table_rows(markdown, "## Mean ± std over seeds")
    # Finished points only: beta=1 over seeds 0 and 1 (sample std); beta=4 has none finished.
    assert grouped == [
        [
            "1",
            "2",
            "-100.00 ± 0.00",
            "11.00 ± 1.41",
            "89.00 ± 1.41",
            "95.00",
            "42.50",
            "0.200 ± 0.141",
            "1m30s ± 42s",
        ]
    ]
    assert "FID of samples at T 1 ↓" in header and "FID and KID: the test protocol" in markdown
    assert "- `beta=4,seed=0`: step 5 of 10" in markdown
    assert "- `beta=4,seed=1`: not started" in markdown
    assert summary.plot_path == tmp_path / "rate_distortion.png" and summary.plot_path.exists()


@pytest.mark.slow
def test_sweep_list_prints_every_point_with_its_index(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--config=experiments/shapes.py",
            "--sweep_list",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines() if line[:4].strip().isdigit()]
    assert len(lines) == 45
    assert lines[0] == ["0", "beta=1,latent_dim=4,seed=0", "not", "started"]
    assert lines[44][:2] == ["44", "beta=16,latent_dim=32,seed=2"]
    assert "--array=0-44" in result.stdout


def test_summary_ignores_an_eval_json_of_an_earlier_checkpoint(tmp_path):
    point = {"objective.beta": 1, "seed": 0}
    fake_point(tmp_path, point, 10, validation=(10.0, 90.0), analysis={"mig": 0.5}, eval_step=5)
    row = results.summarize(tmp_path).rows[0]
    assert row["status"] == "finished" and row["mig"] is None
