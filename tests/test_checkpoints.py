"""Checkpoints: restore_latest falls back past damaged checkpoints, written by orbax on disk."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from vae_jax import checkpoints

# After a failed restore, orbax leaves a callback that finds its asyncio event loop closed.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def state_at(step: int) -> dict:
    """A small train-state-like pytree whose values differ at every step."""
    rng = np.random.default_rng(step)
    return {
        "step": np.array(step, np.int32),
        "params": {
            "w": rng.normal(size=(3, 4)).astype(np.float32),
            "b": rng.normal(size=(5,)).astype(np.float32),
        },
    }


def template() -> dict:
    return state_at(0)


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A workdir with checkpoints at steps 1, 2 and 3."""
    manager = checkpoints.checkpoint_manager(tmp_path)
    for step in (1, 2, 3):
        checkpoints.save(manager, step, state_at(step))
    manager.wait_until_finished()
    manager.close()
    return tmp_path


def step_dir(workdir: Path, step: int) -> Path:
    return workdir / checkpoints.CHECKPOINT_DIR / str(step)


def data_files(step_path: Path) -> list[Path]:
    """The OCDBT data files that hold a step's array bytes (orbax 0.12: default/**/d/<hash>)."""
    files = sorted(p for p in step_path.glob("default/**/d/*") if p.is_file())
    assert files, f"no array data files in {step_path}: {sorted(step_path.rglob('*'))}"
    return files


def truncate_data(step_path: Path) -> None:
    for path in data_files(step_path):
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 2)


def overwrite_data(step_path: Path) -> None:
    for path in data_files(step_path):
        path.write_bytes(bytes(path.stat().st_size))


def flip_a_byte(step_path: Path) -> None:
    for path in data_files(step_path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


def delete_data(step_path: Path) -> None:
    for path in data_files(step_path):
        path.unlink()


def delete_manifest(step_path: Path) -> None:
    (step_path / "default" / "manifest.ocdbt").unlink()


def truncate_tree_metadata(step_path: Path) -> None:
    path = step_path / "default" / "_METADATA"
    path.write_text(path.read_text()[:20])


def delete_item(step_path: Path) -> None:
    shutil.rmtree(step_path / "default")


CORRUPTIONS = [
    truncate_data,
    overwrite_data,
    flip_a_byte,
    delete_data,
    delete_manifest,
    truncate_tree_metadata,
    delete_item,
]


def assert_same_tree(actual: dict, expected: dict) -> None:
    assert int(actual["step"]) == int(expected["step"])
    for name in expected["params"]:
        np.testing.assert_array_equal(
            np.asarray(actual["params"][name]), expected["params"][name], err_msg=name
        )


def test_restore_latest_restores_the_newest_intact_step_exactly(workdir):
    state, step = checkpoints.restore_latest(checkpoints.checkpoint_manager(workdir), template())
    assert step == 3
    assert_same_tree(state, state_at(3))


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before_with_a_warning(
    workdir, corrupt, caplog
):
    corrupt(step_dir(workdir, 3))
    with caplog.at_level("WARNING"):
        state, step = checkpoints.restore_latest(
            checkpoints.checkpoint_manager(workdir), template()
        )
    assert step == 2
    assert_same_tree(state, state_at(2))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("step 3" in w and "cannot be restored" in w for w in warnings), warnings


def test_the_manager_saves_and_restores_after_falling_back(workdir):
    delete_item(step_dir(workdir, 3))  # the kind of damage that used to break orbax's manager
    manager = checkpoints.checkpoint_manager(workdir)
    _, step = checkpoints.restore_latest(manager, template())
    assert step == 2
    checkpoints.save(manager, 4, state_at(4))
    manager.wait_until_finished()
    state, step = checkpoints.restore_latest(manager, template())
    assert step == 4
    assert_same_tree(state, state_at(4))


def test_two_damaged_checkpoints_fall_back_to_the_oldest(workdir, caplog):
    truncate_data(step_dir(workdir, 3))
    delete_manifest(step_dir(workdir, 2))
    with caplog.at_level("WARNING"):
        state, step = checkpoints.restore_latest(
            checkpoints.checkpoint_manager(workdir), template()
        )
    assert step == 1
    assert_same_tree(state, state_at(1))
    assert "step 3" in caplog.text and "step 2" in caplog.text, caplog.text


def test_all_checkpoints_damaged_raises_naming_the_checkpoint_directory(workdir):
    for step in (1, 2, 3):
        truncate_data(step_dir(workdir, step))
    manager = checkpoints.checkpoint_manager(workdir)
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.restore_latest(manager, template())
    message = str(error.value)
    assert str(workdir / checkpoints.CHECKPOINT_DIR) in message, message
    assert "[1, 2, 3]" in message and "--workdir" in message, message


def test_no_checkpoints_gives_none(tmp_path):
    assert checkpoints.restore_latest(checkpoints.checkpoint_manager(tmp_path), template()) is None


def test_restore_latest_without_a_template_gives_the_saved_arrays(workdir):
    truncate_data(step_dir(workdir, 3))
    state, step = checkpoints.restore_latest(checkpoints.checkpoint_manager(workdir), None)
    assert step == 2
    assert_same_tree(state, state_at(2))
