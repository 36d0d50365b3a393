"""Where training and evaluation numbers go: metrics.jsonl for machines, TensorBoard for plots,
eval.json for the evaluation of --mode=analyze.

TensorBoard event files are written with TensorBoard's own record writer and protocol buffers,
not tf.summary, so runs on the built-in data never import TensorFlow (slow to import, and absent
from some accelerator images).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
from absl import logging
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from vae_jax import figures, files

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"


class MetricsWriter:
    """Appends one JSON object per call to <workdir>/metrics.jsonl and writes the same scalars
    (and image grids) to a TensorBoard events file in <workdir>."""

    def __init__(self, workdir: str | Path):
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        # TensorBoard's naming; the pid keeps two writers in one second apart ("x": never
        # truncate an existing file).
        name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
        self._events = RecordWriter(open(self._workdir / name, "xb"))  # noqa: SIM115 (close())
        self._write_event(event_pb2.Event(file_version="brain.Event:2"))

    def _write_event(self, event: event_pb2.Event) -> None:
        event.wall_time = time.time()
        self._events.write(event.SerializeToString())
        self._events.flush()

    def _write_summary(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
        summary = summary_pb2.Summary(value=values)
        self._write_event(event_pb2.Event(step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self._workdir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        values = [
            summary_pb2.Summary.Value(tag=name, simple_value=float(value))
            for name, value in scalars.items()
        ]
        self._write_summary(step, values)

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """images: name -> one [H, W, C] grid in [0, 1]."""
        values = [
            summary_pb2.Summary.Value(
                tag=name,
                image=summary_pb2.Summary.Image(
                    height=image.shape[0],
                    width=image.shape[1],
                    colorspace=image.shape[2],
                    encoded_image_string=figures.png_bytes(np.asarray(image)),
                ),
            )
            for name, image in images.items()
        ]
        self._write_summary(step, values)

    def close(self) -> None:
        self._events.close()


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
    if len(kept) < len(records):  # atomic: a kill leaves the old or the new file
        files.write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


def write_evaluation(workdir: str | Path, results: dict) -> Path:
    """Writes <workdir>/eval.json; an existing one (another step's or settings') is first moved
    aside as eval_step_<N>[_<i>].json, so no evaluation is overwritten."""
    path = Path(workdir) / EVAL_FILE
    if path.is_file():
        step = json.loads(path.read_text()).get("step", "unknown")
        kept = path.with_name(f"eval_step_{step}.json")
        attempt = 1
        while kept.exists():
            kept, attempt = path.with_name(f"eval_step_{step}_{attempt}.json"), attempt + 1
        path.rename(kept)
        logging.info("Kept the previous evaluation (step %s) as %s", step, kept)
    return files.write_json(path, results)
