"""Figures as PNG files: image grids (reconstructions, samples, traversals, interpolations),
with titles and row/column labels, and the rate-distortion plot of a sweep."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

GRID_LINE = 2  # pixels of grey between images
GRID_GREY = 0.5


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tiles images [N, H, W, C] in [0, 1] into rows of `columns`, separated by grey lines.

    Returns [rows·(H+g)+g, columns·(W+g)+g, C] float32 in [0, 1].
    """
    n, height, width, channels = images.shape
    rows = -(-n // columns)
    step_y, step_x = height + GRID_LINE, width + GRID_LINE
    grid = np.full(
        (rows * step_y + GRID_LINE, columns * step_x + GRID_LINE, channels), GRID_GREY, np.float32
    )
    for i, image in enumerate(np.clip(images, 0.0, 1.0)):
        top, left = GRID_LINE + (i // columns) * step_y, GRID_LINE + (i % columns) * step_x
        grid[top : top + height, left : left + width] = image
    return grid


def reconstruction_grid(
    inputs: np.ndarray, reconstructions: np.ndarray, columns: int = 8
) -> np.ndarray:
    """Rows of inputs [N, H, W, C], each followed by the row of their reconstructions."""
    pairs = []
    for start in range(0, len(inputs), columns):
        pairs += [inputs[start : start + columns], reconstructions[start : start + columns]]
    padded = [
        np.concatenate([row, np.ones((columns - len(row),) + row.shape[1:], row.dtype)])
        for row in pairs
    ]
    return image_grid(np.concatenate(padded), columns)


def _to_pil(grid: np.ndarray, scale: int) -> Image.Image:
    """A [H, W, C] image in [0, 1] as an 8-bit PIL image, upscaled `scale` times (nearest)."""
    pixels = np.rint(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def save_png(grid: np.ndarray, path: str | Path, scale: int = 2) -> Path:
    """Writes a [H, W, C] image in [0, 1] as an 8-bit PNG, upscaled `scale` times (nearest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(grid, scale).save(path)
    return path


def png_bytes(grid: np.ndarray, scale: int = 1) -> bytes:
    """A [H, W, C] image in [0, 1] encoded as an 8-bit PNG file's bytes."""
    buffer = io.BytesIO()
    _to_pil(grid, scale).save(buffer, format="PNG")
    return buffer.getvalue()


def rate_distortion_plot(
    rates: np.ndarray,
    distortions: np.ndarray,
    betas: np.ndarray,
    latent_dims: np.ndarray,
    path: str | Path,
    title: str = "Rate-distortion (test set)",
) -> Path:
    """Saves the rate-distortion plane of a sweep as a PNG (Alemi et al. 2018, "Fixing a Broken
    ELBO"): one marker per run, coloured by β, shaped and labelled by latent size, over dotted
    lines of equal ELBO (rate + distortion = −ELBO).

    Args:
      rates: [N] test KL(q(z|x) || p(z)) per run, nats per example.
      distortions: [N] test −E_q log p(x|z) per run, nats per example.
      betas: [N] the β of each run.
      latent_dims: [N] the latent size of each run.
      path: the PNG to write.
    Returns:
      path.
    """
    # Imported here: matplotlib takes a second to import and training never draws plots.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    rates, distortions = np.asarray(rates, float), np.asarray(distortions, float)
    betas, latent_dims = np.asarray(betas, float), np.asarray(latent_dims)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(8, 5.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    beta_values = np.unique(betas)
    palette = colormaps["viridis"](np.linspace(0.0, 0.9, len(beta_values)))
    colour = {b: palette[i] for i, b in enumerate(beta_values)}
    shapes = "osD^vP*Xhp<>"
    dim_values = np.unique(latent_dims)
    marker = {d: shapes[i % len(shapes)] for i, d in enumerate(dim_values)}

    for r, d, b, k in zip(rates, distortions, betas, latent_dims):
        ax.scatter(r, d, s=55, color=colour[b], marker=marker[k], edgecolors="black", lw=0.6)
        ax.annotate(
            str(k), (r, d), xytext=(5, 4), textcoords="offset points", fontsize=7, color="0.25"
        )

    # Lines of constant -ELBO = rate + distortion; a tighter bound lies further down-left.
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for level in MaxNLocator(6).tick_values(x0 + y0, x1 + y1)[1:-1]:
        ax.plot([x0, x1], [level - x0, level - x1], ls=":", lw=0.8, color="0.6", zorder=0)
        ax.annotate(
            f"−ELBO {level:g}",
            (min(x1, level - y0), max(y0, level - x1)),
            xytext=(-4, 4),
            textcoords="offset points",
            ha="right",
            fontsize=7,
            color="0.5",
        )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)

    ax.set_xlabel("rate  KL(q(z|x) ‖ p(z))  [nats]")
    ax.set_ylabel("distortion  −E log p(x|z)  [nats]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    beta_handles = [
        Line2D([], [], ls="", marker="o", ms=8, color=colour[b], mec="black", label=f"{b:g}")
        for b in beta_values
    ]
    dim_handles = [
        Line2D([], [], ls="", marker=marker[d], ms=8, color="white", mec="black", label=str(d))
        for d in dim_values
    ]
    # Outside the axes, where they cannot hide a run.
    first = ax.legend(
        handles=beta_handles, title="β", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8
    )
    ax.add_artist(first)
    ax.legend(
        handles=dim_handles,
        title="latent dim",
        loc="lower left",
        bbox_to_anchor=(1.02, 0.0),
        fontsize=8,
    )
    fig.savefig(path)
    return path


def labelled_grid_png(
    images: np.ndarray,
    path: str | Path,
    title: str,
    row_labels: list[str] | None = None,
    column_labels: list[str] | None = None,
) -> Path:
    """Saves images [R, C, H, W, ch] in [0, 1] as one grid PNG with grey lines between images,
    a title, and optional labels for rows (left) and columns (top)."""
    from matplotlib.figure import Figure

    rows, columns, height, width, channels = images.shape
    grid = image_grid(images.reshape((rows * columns, height, width, channels)), columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 1.6 / 64  # inches per pixel: a 64x64 image is 1.6 inches wide
    margin_left = 1.1 if row_labels else 0.2
    fig_width = grid.shape[1] * scale + margin_left + 0.2
    # The title wrapped to the figure (about 13 characters an inch at 11 pt): a grid of one or
    # two images is narrower than its title.
    title_lines = textwrap.wrap(title, max(16, int(fig_width * 13)))
    title_height = 0.2 * (len(title_lines) - 1)
    fig_height = grid.shape[0] * scale + 0.9 + title_height
    fig = Figure(figsize=(fig_width, fig_height), dpi=100)
    ax = fig.add_axes(
        (
            margin_left / fig_width,
            0.2 / fig_height,
            1 - (margin_left + 0.2) / fig_width,
            1 - (1.0 + title_height) / fig_height,
        )
    )
    ax.imshow(
        grid[..., 0] if channels == 1 else grid,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    centres_y = GRID_LINE + np.arange(rows) * (height + GRID_LINE) + height / 2
    centres_x = GRID_LINE + np.arange(columns) * (width + GRID_LINE) + width / 2
    ax.set_yticks(centres_y, row_labels or [], fontsize=9)
    ax.set_xticks(centres_x, column_labels or [], fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle("\n".join(title_lines), fontsize=11, y=1 - 0.12 / fig_height, va="top")
    fig.savefig(path)
    return path


def group_rate_plot(
    rates: np.ndarray, errors: np.ndarray, group_sizes: list[int], path: str | Path, title: str
) -> Path:
    """Bar chart of a hierarchical model's rate per latent group (top group first): rates and
    their standard errors [L] in nats, each bar labelled with its share of the total rate and
    the group's number of latents."""
    from matplotlib.figure import Figure

    rates, errors = np.asarray(rates, float), np.asarray(errors, float)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(max(4.0, 0.45 * len(rates) + 2.0), 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(rates))
    ax.bar(positions, rates, yerr=errors, color="tab:blue", capsize=2)
    total = rates.sum()
    for x, rate in zip(positions, rates):
        ax.annotate(
            f"{rate / total:.0%}",
            (x, rate),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(positions, [f"{g}\n({k})" for g, k in zip(positions, group_sizes)], fontsize=7)
    ax.set_xlabel("latent group, top first (latents)")
    ax.set_ylabel("rate  KL(q(z_l|x, z_<l) ‖ p(z_l|z_<l))  [nats]")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)
    return path
