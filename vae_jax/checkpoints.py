"""Persistence only: orbax checkpoints of the train state, and the run's config.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from absl import logging

CONFIG_FILE = "config.json"
EVAL_FILE = "eval.json"  # written by --mode=analyze
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"  # where set_aside moves steps that cannot be restored


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


def write_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Writes the resolved config to <workdir>/config.json (what load_run reads), atomically:
    readers and a kill see the old file or the new one."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def read_config_dict(workdir: str | Path) -> dict[str, Any]:
    """The plain dict stored in <workdir>/config.json."""
    return json.loads((Path(workdir) / CONFIG_FILE).read_text())


def checkpoint_manager(
    workdir: str | Path, max_to_keep: int | None = None
) -> ocp.CheckpointManager:
    """An orbax manager over <workdir>/checkpoints/<step>/; writes are atomic (tmp dir + rename)."""
    directory = (Path(workdir) / CHECKPOINT_DIR).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Saves a pytree at `step` (asynchronously; `manager.wait_until_finished()` to block)."""
    manager.save(step, args=ocp.args.StandardSave(state))


def restore(manager: ocp.CheckpointManager, step: int, template: Any) -> Any:
    """Restores the pytree saved at `step` with the structure, shapes and dtypes of `template`."""
    return manager.restore(step, args=ocp.args.StandardRestore(template))


def restore_arrays(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """Restores the pytree saved at `step` as nested dicts of arrays, with no template needed."""
    return manager.restore(step, args=ocp.args.StandardRestore())


def _describe(error: Exception, limit: int = 400) -> str:
    """Type and first line of an error, shortened: tensorstore's run to kilobytes of JSON."""
    lines = str(error).strip().splitlines()
    text = lines[0].rstrip(".") if lines else ""
    text = text if len(text) <= limit else text[:limit] + " ..."
    return f"{type(error).__name__}: {text}"


def restore_latest(manager: ocp.CheckpointManager, template: Any) -> tuple[Any, int] | None:
    """Restores the newest checkpoint that restores cleanly.

    A step whose files are damaged (truncated, overwritten, deleted) is skipped with a warning
    naming it and the error, and the step before it is tried, and so on. Skipped step
    directories stay on disk.

    Args:
      template: the pytree to restore into, as in `restore` (None: nested dicts of arrays).
    Returns:
      (state, step), or None when there are no checkpoints.
    Raises:
      CheckpointError naming the checkpoint directory when checkpoints exist but none restores.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    errors = []
    for step in steps:
        # A manager per try: orbax fixes a manager's item layout at its first restore, so a step
        # missing its item directory would make every later restore (and save) with it fail.
        reader = ocp.CheckpointManager(manager.directory)
        try:
            return restore(reader, step, template), step
        except Exception as error:  # orbax and tensorstore raise many kinds for damaged files
            errors.append(error)
            logging.warning(
                "Skipping the checkpoint at step %d in %s, which cannot be restored: %s",
                step,
                manager.directory,
                _describe(error),
            )
        finally:
            reader.close()
    raise CheckpointError(
        f"no checkpoint in {manager.directory} can be restored (steps {sorted(steps)}); "
        f"step {steps[0]} failed with {_describe(errors[0])}. If the config's model changed "
        "shape (--allow_config_change), the checkpoints hold another model: use a new --workdir."
        " Otherwise they are damaged: train in a new --workdir, or move them away to start over."
    ) from errors[0]


def set_aside(workdir: str | Path, steps: list[int]) -> None:
    """Moves the step directories `steps` from <workdir>/checkpoints/ to
    <workdir>/checkpoints_damaged/, kept for inspection, so that training can save those steps
    again (orbax saves no step at or below the newest one on disk)."""
    workdir = Path(workdir)
    (workdir / DAMAGED_DIR).mkdir(exist_ok=True)
    for step in steps:
        target = workdir / DAMAGED_DIR / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
        (workdir / CHECKPOINT_DIR / str(step)).rename(target)
        logging.warning("Moved the damaged checkpoint at step %d to %s", step, target)
