"""Where training and evaluation numbers go: metrics.jsonl for machines, TensorBoard for plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.jsonl"


class MetricsWriter:
    """Appends one JSON object per call to <workdir>/metrics.jsonl and writes the same scalars
    (and image grids) as TensorBoard events in <workdir>."""

    def __init__(self, workdir: str | Path):
        # TensorFlow (8 s to import) is here only for tf.summary: loaded by the first writer, and
        # kept off any accelerator.
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        self._tf = tf
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._summary = tf.summary.create_file_writer(str(self._workdir))

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self._workdir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        with self._summary.as_default(step=int(step)):
            for name, value in scalars.items():
                self._tf.summary.scalar(name, float(value))

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """images: name -> one [H, W, C] grid in [0, 1]."""
        with self._summary.as_default(step=int(step)):
            for name, image in images.items():
                self._tf.summary.image(name, np.asarray(image)[None], max_outputs=1)

    def close(self) -> None:
        self._summary.flush()
        self._summary.close()


def read_metrics(workdir: str | Path) -> list[dict[str, float]]:
    """Every record of <workdir>/metrics.jsonl, in order."""
    path = Path(workdir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drop_metrics_after(workdir: str | Path, step: int) -> None:
    """Removes the records of steps after `step` from <workdir>/metrics.jsonl: a run resumed
    from the checkpoint at `step` logs them again."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return
    records = read_metrics(workdir)
    kept = [record for record in records if record["step"] <= step]
    if len(kept) < len(records):
        temporary = path.with_suffix(".jsonl.tmp")
        temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
        temporary.replace(path)  # atomic: a kill leaves the old or the new file
