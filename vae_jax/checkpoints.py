"""Persistence only: orbax checkpoints of the train state, and the run's config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
EVAL_FILE = "eval.json"  # written by --mode=analyze
CHECKPOINT_DIR = "checkpoints"


def write_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Writes the resolved config to <workdir>/config.json (what load_run reads)."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


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
