"""Command-line mistakes: each fails at start with one line naming what is wrong and what is
valid, exits non-zero, prints no traceback and leaves nothing behind.

The `slow` tests run `python launch.py` as a subprocess (a few seconds of imports each); the
checks made before absl parses the flags are also called in this process.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vae_jax.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(
    p.stem for p in (REPO / "experiments").glob("*.py") if p.stem not in ("__init__", "base")
)


def launch(*args: str, env: dict[str, str] | None = None) -> str:
    """Runs `python launch.py *args` in the repository, asserts that it failed without a
    traceback, and returns its one error line."""
    result = subprocess.run(
        [sys.executable, "launch.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    error_lines = [line for line in output.splitlines() if "Error" in line]
    assert len(error_lines) == 1, output[-3000:]
    return error_lines[0]


def parse_error(capsys, *args: str) -> str:
    """launch.parse_flags on `args` in this process (the flag checks before absl parses): it must
    exit 1 with one line on stderr, which is returned."""
    import launch  # defines the absl flags; imported here, in the one test process

    with pytest.raises(SystemExit) as exit_:
        launch.parse_flags(["launch.py", *args])
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_misspelled_config_key_fails_in_one_line_suggesting_the_key(tmp_path):
    line = launch("--config.model.latnet_dim=3", f"--workdir={tmp_path / 'run'}")
    assert "ConfigError" in line and "model.latnet_dim" in line, line
    assert "did you mean --config.model.latent_dim" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "spec, variants",
    [
        ("experiments/shapes.py:nonsense", "tiny"),
        ("experiments/mnist.py:conv,tny", "conv, ladder, iwae, paper, tiny"),
    ],
)
def test_unknown_config_variant_fails_naming_the_variants(capsys, spec, variants):
    line = parse_error(capsys, f"--config={spec}")
    assert "ConfigError" in line and spec in line, line
    assert f"variants: {variants}" in line, line


def test_missing_config_file_fails_listing_the_experiments(capsys):
    line = parse_error(capsys, "--config=experiments/nonexistent.py")
    assert "ConfigError" in line and "experiments/nonexistent.py" in line, line
    for name in EXPERIMENTS:
        assert f"experiments/{name}.py" in line, line


@pytest.mark.slow
def test_analyze_of_a_missing_workdir_fails_in_one_line(tmp_path):
    missing = tmp_path / "no_such_run"
    line = launch("--mode=analyze", f"--workdir={missing}")
    assert f"--workdir={missing} does not exist" in line, line
    assert not missing.exists()


@pytest.mark.slow
def test_image_folder_path_that_is_a_file_fails_saying_it_is_a_file(tmp_path):
    a_file = tmp_path / "images.zip"
    a_file.write_bytes(b"not a folder")
    line = launch(
        "--config=experiments/shapes.py:tiny",
        f"--workdir={tmp_path / 'run'}",
        "--config.dataset.name=image_folder",
        f"--config.dataset.path={a_file}",
    )
    assert "DataNotFoundError" in line and "is a file, not a folder" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_celeba_without_data_fails_and_creates_nothing_in_the_workdir(tmp_path):
    tfds_dir = tmp_path / "tfds"
    tfds_dir.mkdir()
    workdir = tmp_path / "run"
    line = launch(
        "--config=experiments/celeba.py:tiny",
        f"--workdir={workdir}",
        env={**os.environ, "TFDS_DATA_DIR": str(tfds_dir)},
    )
    assert "DataNotFoundError" in line and "CelebA" in line, line
    assert not workdir.exists(), sorted(str(p) for p in workdir.rglob("*"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_declares_its_variants_and_rejects_others(name):
    experiment = importlib.import_module(f"experiments.{name}")
    assert "tiny" in experiment.VARIANTS
    for variant in ("", *experiment.VARIANTS):
        experiment.get_config(variant)
    variants = ", ".join(experiment.VARIANTS)
    with pytest.raises(ConfigError, match=f"unknown variant 'nonsense'.*variants: {variants} "):
        experiment.get_config("tiny,nonsense")
