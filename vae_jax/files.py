"""Writing files that other processes (or a kill) may catch half done: every write here is atomic,
so a reader sees the old file or the new one, never a mixture."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def write_text(path: str | Path, text: str) -> Path:
    """Writes `text` to `path` through a temporary file in the same directory and a rename; the
    temporary name holds the process id, so concurrent writers (array jobs) never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Writes `arrays` with numpy.savez, atomically (see write_text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    return path


def write_json(path: str | Path, record: Any, sort_keys: bool = False) -> Path:
    """Writes `record` as indented JSON, atomically (see write_text)."""
    return write_text(path, json.dumps(record, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in `path`, or None when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None
