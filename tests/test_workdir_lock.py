"""The workdir lock: one run per workdir, stale locks of dead processes taken over."""

import json
import logging
import os
import socket
import subprocess
import sys

import jax
import pytest

from vae_jax.workdir_lock import LOCK_FILE, WorkdirLockedError, hold


def write_lock(workdir, pid, host):
    workdir.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host, "started": "2024-01-01T00:00:00+00:00"}
    (workdir / LOCK_FILE).write_text(json.dumps(record))


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_lock_holds_this_process_record_and_is_gone_after_exit(tmp_path):
    with hold(tmp_path):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["started"]
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_is_gone_after_an_error_in_the_block(tmp_path):
    with pytest.raises(KeyError), hold(tmp_path):
        raise KeyError("the run failed")
    assert not (tmp_path / LOCK_FILE).exists()


def test_second_holder_is_refused_naming_the_holder_and_keeps_the_first_lock(tmp_path):
    with hold(tmp_path):
        before = (tmp_path / LOCK_FILE).read_text()
        holder = f"process {os.getpid()} on {socket.gethostname()}"
        with (
            pytest.raises(WorkdirLockedError, match=holder + ".*another --workdir"),
            hold(tmp_path),
        ):
            pass
        assert (tmp_path / LOCK_FILE).read_text() == before
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = dead_pid()
    write_lock(tmp_path, pid, socket.gethostname())
    with caplog.at_level(logging.WARNING), hold(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"process {pid} on this host" in caplog.text and "is gone" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_from_another_host_is_refused_saying_how_to_remove_it(tmp_path):
    write_lock(tmp_path, dead_pid(), "some-other-host")
    lock = tmp_path / LOCK_FILE
    with pytest.raises(WorkdirLockedError, match=f"some-other-host.*remove {lock}"), hold(tmp_path):
        pass
    assert lock.exists()  # not ours to remove


def test_unreadable_lock_is_refused(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with pytest.raises(WorkdirLockedError, match="no readable record"), hold(tmp_path):
        pass


def test_directories_made_for_the_lock_are_removed_if_nothing_was_written(tmp_path):
    with hold(tmp_path / "runs" / "empty"):
        assert (tmp_path / "runs" / "empty" / LOCK_FILE).exists()
    assert not (tmp_path / "runs").exists()
    with hold(tmp_path / "runs" / "written"):
        (tmp_path / "runs" / "written" / "config.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "runs" / "written").iterdir()) == ["config.json"]


def test_only_process_zero_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    with hold(tmp_path / "run"):
        assert not (tmp_path / "run").exists()
