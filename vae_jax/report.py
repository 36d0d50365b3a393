"""How numbers are shown: the one table of metrics (label, which direction is better, format)
that the training log, results.csv / results.md and the analysis table all read, and the
formatting of numbers, durations and markdown tables.

Metric keys are those of eval.json and metrics.jsonl; a split prefix ("test/elbo") names the
same metric measured on that split.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Metric:
    label: str  # in log lines and table headers
    better: str  # "higher", "lower", or "" where neither is (the rate trades against distortion)
    fmt: str  # format spec of one value, or "duration" (seconds)


# Nats per example unless named bits/dim; the IWAE bound is the tighter likelihood estimate.
METRICS = {
    "loss": Metric("loss", "lower", ".2f"),
    "elbo": Metric("ELBO", "higher", ".2f"),
    "rate": Metric("rate", "", ".2f"),
    "rate_group": Metric("rate of group", "", ".2f"),  # rate_group_<g>: hierarchical models
    "rate_share_group": Metric("rate share of group", "", ".3f"),  # its fraction of the rate
    "iwae_bound": Metric("IWAE bound", "higher", ".2f"),
    "distortion": Metric("distortion", "lower", ".2f"),
    "elbo_bits_per_dim": Metric("ELBO bits/dim", "lower", ".3f"),
    "iwae_nll": Metric("IWAE NLL", "lower", ".2f"),
    "bits_per_dim": Metric("IWAE bits/dim", "lower", ".3f"),
    # Against the test split (evaluation/sample_quality.py): fid_t<T> of samples at temperature T.
    "fid_t": Metric("FID of samples at T", "lower", ".2f"),
    "kid_t": Metric("KID of samples at T", "lower", ".4f"),
    "fid_reconstructions": Metric("FID of reconstructions", "lower", ".2f"),
    "kid_reconstructions": Metric("KID of reconstructions", "lower", ".4f"),
    "active_units": Metric("active units", "", ".1f"),
    "mig": Metric("MIG", "higher", ".3f"),
    "dci_disentanglement": Metric("DCI disentanglement", "higher", ".3f"),
    "dci_completeness": Metric("DCI completeness", "higher", ".3f"),
    "dci_informativeness": Metric("DCI informativeness", "higher", ".3f"),
    "sap_score": Metric("SAP", "higher", ".3f"),
    "modularity": Metric("modularity", "higher", ".3f"),
    "explicitness": Metric("explicitness", "higher", ".3f"),
    "beta_vae_score": Metric("BetaVAE score", "higher", ".3f"),
    "factor_vae_score": Metric("FactorVAE score", "higher", ".3f"),
    "attribute_probe_accuracy": Metric("attribute probe accuracy", "higher", ".3f"),
    "label_probe_accuracy": Metric("label probe accuracy", "higher", ".3f"),
    # The regularisers of objective.kind (objectives.py), on training batches.
    "tc": Metric("TC", "", ".2f"),
    "mutual_info": Metric("MI", "", ".2f"),
    "dimwise_kl": Metric("dim-wise KL", "", ".2f"),
    "dip_off_diagonal": Metric("DIP off-diag", "", ".3f"),
    "dip_diagonal": Metric("DIP diag", "", ".3f"),
    "discriminator_loss": Metric("disc. loss", "", ".3f"),
    "discriminator_accuracy": Metric("disc. acc", "", ".3f"),
    "discriminator_grad_norm": Metric("disc. grad norm", "", ".2f"),
    "grad_norm": Metric("grad norm", "", ".2f"),
    "skipped_steps": Metric("skipped", "lower", ".0f"),
    "images_per_s": Metric("img/s", "higher", ".0f"),
    "wall_time_s": Metric("wall time", "", "duration"),
}

ARROWS = {"higher": " ↑", "lower": " ↓", "": ""}


def _name_and_group(key: str) -> tuple[str, float | None]:
    """("rate_group", 3) for "test/rate_group_3", ("fid_t", 0.7) for "fid_t0.7", ("elbo", None)
    for "test/elbo"."""
    name = key.rsplit("/", 1)[-1]
    base, _, group = name.rpartition("_")
    if base in ("rate_group", "rate_share_group") and group.isdigit():
        return base, int(group)
    if name.startswith(("fid_t", "kid_t")) and name[5:].replace(".", "", 1).isdigit():
        return name[:5], float(name[5:])
    return name, None


def metric_name(key: str) -> str:
    """The METRICS entry of `key`: "fid_t" for "fid_t0.7", "rate_group" for "test/rate_group_3"."""
    return _name_and_group(key)[0]


def metric(key: str) -> Metric:
    """The table entry of `key`, a split prefix ("test/") and a group number ignored."""
    return METRICS[metric_name(key)]


def mean_with_error(key: str, values: np.ndarray) -> dict[str, float]:
    """{key: mean, key_se: its standard error (sample s.d. / √N), key_n: N} of per-example
    values [N], as eval.json and metrics.jsonl store every per-example metric."""
    values = np.asarray(values, np.float64)
    n = len(values)
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {key: float(values.mean()), f"{key}_se": se, f"{key}_n": n}


def label(key: str) -> str:
    """The label, after the split when prefixed: "test/elbo" -> "test ELBO"."""
    split = key.rsplit("/", 1)[0] + " " if "/" in key else ""
    group = _name_and_group(key)[1]
    return split + metric(key).label + ("" if group is None else f" {group:g}")


def in_table_order(keys) -> list[str]:
    """`keys` sorted as the metric table lists them (log lines read the same every time)."""
    order = list(METRICS)

    def position(key: str) -> tuple[int, int]:
        name, group = _name_and_group(key)
        return order.index(name), -1 if group is None else group

    return sorted(keys, key=position)


def header(key: str) -> str:
    """Table column header: the label and ↑ / ↓ for the better direction."""
    return label(key) + ARROWS[metric(key).better]


def format_duration(seconds: float) -> str:
    """45 -> "45s", 305 -> "5m05s", 7380 -> "2h03m"."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def format_number(value: float | None, fmt: str) -> str:
    """One value in `fmt` (a format spec or "duration"); "" for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format_duration(value) if fmt == "duration" else format(value, fmt)


def format_metric(key: str, value: float | None) -> str:
    """A value of metric `key` in its table format."""
    return format_number(value, metric(key).fmt)


def markdown_table(headers: list[str], rows: list[list[str]], numeric_from: int) -> str:
    """A GitHub table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
