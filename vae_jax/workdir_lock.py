"""One run per workdir: `hold(workdir)` keeps <workdir>/.lock for as long as a run uses it.

Two processes training in one workdir would interleave their checkpoints, metrics.jsonl and
config.json. The lock file is created atomically (O_CREAT | O_EXCL) and holds
{"pid", "host", "started"}. A lock whose holder died on this host is taken over with a warning; a
lock from another host is refused, since its process cannot be checked from here.

    with workdir_lock.hold(workdir):
        ...  # train
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import jax
from absl import logging

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another run holds the workdir; the message names it and says what to do."""


@contextlib.contextmanager
def hold(workdir: str | Path) -> Iterator[None]:
    """Holds <workdir>/.lock for the duration of the block, making the workdir if needed.

    Only process 0 of a multi-process run takes the lock; the others pass through. On exit the
    lock is removed, and so are the directories made here if they are still empty (a run that
    failed before writing anything leaves nothing behind).

    Raises WorkdirLockedError if a live process on this host, or any process on another host,
    holds the lock.
    """
    if jax.process_index() != 0:
        yield
        return
    workdir = Path(workdir)
    made = list(itertools.takewhile(lambda p: not p.exists(), (workdir, *workdir.parents)))
    workdir.mkdir(parents=True, exist_ok=True)
    lock = workdir / LOCK_FILE
    record = _acquire(lock)
    try:
        yield
    finally:
        if _read(lock) == record:  # still ours
            lock.unlink()
        for directory in made:  # innermost first
            try:
                directory.rmdir()
            except OSError:  # not empty: the run wrote something
                break


def _acquire(lock: Path) -> dict:
    """Creates `lock` holding this process's record and returns the record; first removes a lock
    whose holder died on this host."""
    host = socket.gethostname()
    record = {
        "pid": os.getpid(),
        "host": host,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    try:
        fd = _create(lock)
    except FileExistsError:
        holder = _read(lock)
        if not _is_stale(holder, host):
            raise WorkdirLockedError(_describe(lock, holder, host)) from None
        logging.warning(
            "Taking over %s: its holder, process %s on this host (since %s), is gone.",
            lock,
            holder["pid"],
            holder["started"],
        )
        # Another process taking over at the same instant could remove the lock this one is
        # about to make, and both would run: that needs a crash, then two starts milliseconds
        # apart.
        lock.unlink(missing_ok=True)
        try:
            fd = _create(lock)
        except FileExistsError:  # another process took it in between
            raise WorkdirLockedError(_describe(lock, _read(lock), host)) from None
    with os.fdopen(fd, "w") as file:
        json.dump(record, file)
    return record


def _create(lock: Path) -> int:
    """A write descriptor of a new file `lock`; FileExistsError if it exists (atomically)."""
    return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)


def _read(lock: Path) -> dict | None:
    """The lock's record; None if it is missing or not (yet) a complete record."""
    try:
        record = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return (
        record if isinstance(record, dict) and {"pid", "host", "started"} <= set(record) else None
    )


def _is_stale(holder: dict | None, host: str) -> bool:
    """True if the lock's holder was a process on this host that no longer exists."""
    return holder is not None and holder["host"] == host and not _is_alive(int(holder["pid"]))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: checks that the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _describe(lock: Path, holder: dict | None, host: str) -> str:
    """Why `lock` cannot be taken, and what to do."""
    workdir = lock.parent
    if holder is None:
        return (
            f"{workdir} is locked by {lock}, which holds no readable record (a run starting right "
            f"now, or one killed while taking it). If no run uses {workdir}, remove {lock}; "
            "otherwise use another --workdir"
        )
    who = f"process {holder['pid']} on {holder['host']} (since {holder['started']})"
    if holder["host"] == host:
        return (
            f"{workdir} is in use by {who}. Wait for that run to finish, stop it (kill "
            f"{holder['pid']}), or use another --workdir. If process {holder['pid']} is not a "
            f"run of this workdir, remove {lock}"
        )
    return (
        f"{workdir} is in use by {who}, another host, whose process cannot be checked from "
        f"{host}. If that run is gone (its job ended or {holder['host']} is down), remove {lock} "
        "and start again; otherwise use another --workdir"
    )
