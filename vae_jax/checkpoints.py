"""Persistence only: orbax checkpoints of the train state.

<workdir>/checkpoints/<step>/       the last few (train.keep_checkpoints), and every
                                    train.keep_every steps
<workdir>/checkpoint_best/<step>/   the best by validation ELBO so far, with best.json
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vae_jax import files, parallel
from vae_jax.config import CONFIG_FILE

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "checkpoint_best"
BEST_FILE = "best.json"  # in BEST_DIR: {"step": ..., "validation/elbo": ...}
ITEM = "default"  # the item directory orbax writes inside each step directory
DAMAGED_DIR = "checkpoints_damaged"  # where set_aside moves steps that cannot be restored


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


def checkpoint_manager(
    workdir: str | Path,
    max_to_keep: int | None = None,
    keep_every: int | None = None,
    directory: str = CHECKPOINT_DIR,
) -> ocp.CheckpointManager:
    """An orbax manager over <workdir>/<directory>/<step>/ keeping the newest `max_to_keep` (None:
    all) and every step that is a multiple of `keep_every`; writes are atomic (tmp dir + rename)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, keep_period=keep_every, create=True
    )
    return ocp.CheckpointManager((Path(workdir) / directory).absolute(), options=options)


def read_best(workdir: str | Path) -> dict[str, Any] | None:
    """{"step", "validation/elbo"} of the best checkpoint, or None before the first one."""
    return files.read_json(Path(workdir) / BEST_DIR / BEST_FILE)


def save_best(workdir: str | Path, step: int, state: Any, validation_elbo: float) -> None:
    """Replaces the best checkpoint with `state` at `step` and records it in best.json (written
    after the checkpoint is complete, so best.json never names a missing step)."""
    manager = checkpoint_manager(workdir, max_to_keep=1, directory=BEST_DIR)
    for old in manager.all_steps():
        if old >= step:  # orbax saves no step at or below an existing one
            manager.delete(old)
    save(manager, step, state)
    manager.wait_until_finished()
    manager.close()
    if parallel.is_main_process():
        record = {"step": int(step), "validation/elbo": float(validation_elbo)}
        files.write_json(Path(workdir) / BEST_DIR / BEST_FILE, record)
    parallel.wait_for_all_processes("best.json")


def restore_subtrees(step_dir: str | Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The top-level entries `names` of the state saved in `step_dir` (<dir>/<step>/) that exist
    there, as numpy arrays; nothing else is read (e.g. no optimizer moments)."""
    path = Path(step_dir).absolute() / ITEM
    checkpointer = ocp.PyTreeCheckpointer()
    saved = checkpointer.metadata(path).item_metadata.tree
    item = {name: saved[name] for name in names if name in saved}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    args = ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
    return checkpointer.restore(path, args=args)


def saved_names(step_dir: str | Path) -> set[str] | None:
    """The top-level entries of the state saved in `step_dir`, or None when its metadata cannot
    be read (a damaged checkpoint: restore_latest deals with those)."""
    path = Path(step_dir).absolute() / ITEM
    try:
        return set(ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree)
    except Exception:  # orbax and tensorstore raise many kinds for damaged files
        return None


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


def available_steps(workdir: str | Path) -> list[int]:
    """The finalized steps under <workdir>/checkpoints/, ascending; reads the directory only.

    orbax writes each step into a temporary directory and renames it to <step>/ when complete,
    so a name made of digits is a finished checkpoint.
    """
    directory = Path(workdir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def latest_step(workdir: str | Path) -> int | None:
    """The highest finalized step under <workdir>/checkpoints/, or None."""
    return max(available_steps(workdir), default=None)


def is_finished(workdir: str | Path, num_steps: int) -> bool:
    """Whether the run in `workdir` has a config.json and a checkpoint at or past `num_steps`."""
    step = latest_step(workdir)
    return (Path(workdir) / CONFIG_FILE).exists() and step is not None and step >= num_steps
