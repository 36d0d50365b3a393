"""Progress of long analysis steps in the log, as training shows its own: how many items of how
many are done, at what rate, and the time left.

    progress = Progress("IWAE bound", total=len(images))
    for chunk in chunks:
        ...
        progress.advance(len(chunk))

A line is logged at most every `interval` seconds, the first after `interval`: a step that
ends sooner logs nothing. Callers advance after work that has finished (results read back to
the host), so the rate is the computation's and not its dispatch's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from absl import logging

from vae_jax import report

INTERVAL_S = 10.0


class Progress:
    """Counts the items of one step and logs "what: done/total unit, rate, ETA"."""

    def __init__(self, what: str, total: int, unit: str = "images", interval: float = INTERVAL_S):
        self.what, self.total, self.unit, self.interval = what, total, unit, interval
        self.done = 0
        self.start = self.last_logged = time.perf_counter()

    def advance(self, count: int) -> None:
        """Adds `count` finished items; logs when `interval` has passed since the last line."""
        self.done += count
        now = time.perf_counter()
        if now - self.last_logged < self.interval:
            return
        self.last_logged = now
        rate = self.done / (now - self.start)
        eta = report.format_duration(max(self.total - self.done, 0) / rate)
        logging.info(
            "%s: %d/%d %s | %.1f %s/s | ETA %s",
            self.what,
            self.done,
            self.total,
            self.unit,
            rate,
            self.unit,
            eta,
        )

    def over_batches(self, batches: Iterable[dict]) -> Iterator[dict]:
        """Yields `batches` ({"image": [b, ...], ...}), advancing by each batch's b once the
        caller asks for the next one (its work on the batch is done)."""
        for batch in batches:
            yield batch
            self.advance(len(batch["image"]))
