"""Progress lines of long analysis steps: count, rate and time left, and silence for short ones."""

import logging

from vae_jax import progress as progress_lib


def test_a_step_longer_than_the_interval_logs_count_rate_and_eta(caplog, monkeypatch):
    clock = iter([100.0, 102.0, 104.0, 105.0])  # start, then after each advance
    monkeypatch.setattr(progress_lib.time, "perf_counter", lambda: next(clock))
    caplog.set_level(logging.INFO)
    progress = progress_lib.Progress("IWAE bound", total=100, interval=3.0)
    progress.advance(10)  # 2 s in: quiet
    progress.advance(30)  # 4 s in: 40 done at 10/s, 60 left -> 6 s
    progress.advance(10)  # 1 s after the last line: quiet
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("IWAE")]
    assert lines == ["IWAE bound: 40/100 images | 10.0 images/s | ETA 6s"]


def test_over_batches_counts_images_after_each_batch_is_used(monkeypatch):
    monkeypatch.setattr(progress_lib.time, "perf_counter", lambda: 0.0)
    progress = progress_lib.Progress("ELBO", total=5)
    batches = [{"image": [0, 1, 2]}, {"image": [3, 4]}]
    seen = []
    for batch in progress.over_batches(batches):
        seen.append((len(batch["image"]), progress.done))
    assert seen == [(3, 0), (2, 3)] and progress.done == 5
