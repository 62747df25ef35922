"""Figures of the book in one look: density heatmaps, sample scatters, warped grids, ODE
trajectories, training curves and image grids.

Used by the chapters of ``book/``; tests: ``tests/test_plotting.py``. Each function draws on the
``ax`` it is given (on a new figure when ``ax`` is ``None``) and returns it; only matplotlib is
used, and nothing needs a display (the Agg backend of a book build or a test run works).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from torch import Tensor

from nf_course.common import BOX, Bounds
from nf_course.training import History

if TYPE_CHECKING:
    from nf_course.bijectors.continuous import CNF

__all__ = [
    "plot_density",
    "plot_history",
    "plot_images",
    "plot_samples",
    "plot_trajectories",
    "plot_warped_grid",
]

FIGSIZE = (4.0, 4.0)


def plot_density(
    log_prob_fn: Callable[[Tensor], Tensor],
    ax: Axes | None = None,
    bounds: Bounds = BOX,
    resolution: int = 200,
    *,
    normalize: bool = False,
    cmap: str = "viridis",
    title: str | None = None,
    chunk_size: int = 10_000,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Axes:
    """Heatmap of the density ``exp(log_prob_fn(x))`` of a 2D distribution over a box.

    Args:
        log_prob_fn: ``(B, 2) -> (B,)``, e.g. ``flow.log_prob``, a dataset's exact log-density
            or ``lambda x: -energy(x)``; evaluated without gradients, ``chunk_size`` points at
            a time.
        ax: the axes to draw on; a new figure when ``None``.
        bounds: the box ``((x_min, x_max), (y_min, y_max))``.
        resolution: pixels per side; the density is evaluated at the pixel centres.
        normalize: divide by the grid's Riemann sum so that the heatmap integrates to one over
            the box (to show an unnormalized target on the scale of a normalized flow).
        cmap: the colormap.
        title: an optional title.
        chunk_size: points per call of ``log_prob_fn``.
        dtype: of the grid points (default: torch's default dtype); must match the flow's.
        device: of the grid points (default: CPU); must match the flow's.

    Returns:
        the axes; its image ``ax.images[-1]`` holds the ``(resolution, resolution)`` density
        values, row ``i`` at the ``i``-th pixel centre from the bottom.
    """
    ax = _new_axes(ax)
    (x_min, x_max), (y_min, y_max) = bounds
    grid_y, grid_x = torch.meshgrid(
        _pixel_centres(y_min, y_max, resolution),
        _pixel_centres(x_min, x_max, resolution),
        indexing="ij",
    )
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    log_p = _evaluate(log_prob_fn, _to(points, dtype, device), chunk_size)
    if log_p.shape != (points.shape[0],):
        raise ValueError(
            f"plot_density: log_prob_fn must map (B, 2) to (B,), got shape {tuple(log_p.shape)} "
            f"for B = {points.shape[0]}"
        )
    density = _to_numpy(log_p.exp()).reshape(resolution, resolution)
    if normalize:
        cell_area = (x_max - x_min) * (y_max - y_min) / resolution**2
        density = density / (density.sum() * cell_area)
    ax.imshow(
        density, origin="lower", extent=(x_min, x_max, y_min, y_max), cmap=cmap, aspect="equal"
    )
    return _finish(ax, title)


def plot_samples(
    x: Tensor | np.ndarray,
    ax: Axes | None = None,
    bounds: Bounds | None = None,
    *,
    c: Tensor | np.ndarray | None = None,
    cmap: str = "viridis",
    color: str = "C0",
    size: float = 2.0,
    alpha: float = 0.5,
    title: str | None = None,
) -> Axes:
    """Scatter plot of 2D samples ``x (N, 2)`` as small translucent dots.

    Args:
        x: the samples, a tensor or an array ``(N, 2)``.
        ax: the axes to draw on; a new figure when ``None``.
        bounds: limits ``((x_min, x_max), (y_min, y_max))``; matplotlib's own when ``None``.
        c: optional values ``(N,)`` that color the dots through ``cmap`` (e.g. a label, or
            ``log p`` of each sample); without them every dot has ``color``.
        cmap: the colormap for ``c``.
        color: the color of the dots when ``c`` is not given.
        size: the dots' area in points².
        alpha: the dots' opacity.
        title: an optional title.

    Returns:
        the axes; its scatter (``ax.collections[-1]``) has the samples as offsets.
    """
    ax = _new_axes(ax)
    points = _to_numpy(x)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"plot_samples: x must have shape (N, 2), got {points.shape}")
    colors = {"color": color} if c is None else {"c": _to_numpy(c), "cmap": cmap}
    ax.scatter(points[:, 0], points[:, 1], s=size, alpha=alpha, linewidths=0, **colors)
    if bounds is not None:
        ax.set_xlim(bounds[0])
        ax.set_ylim(bounds[1])
    ax.set_aspect("equal")
    return _finish(ax, title)


def plot_warped_grid(
    bijector_fn: Callable[[Tensor], Tensor | tuple[Tensor, ...]],
    ax: Axes | None = None,
    bounds: Bounds = BOX,
    lines: int = 17,
    *,
    points_per_line: int = 200,
    colors: tuple[str, str] = ("C0", "C1"),
    linewidth: float = 0.8,
    title: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Axes:
    """How a 2D map deforms a regular grid: each grid line drawn after the map.

    Args:
        bijector_fn: the map ``(B, 2) -> (B, 2)``; a bijector's direction, which returns
            ``(output, log_det)``, works as is (``flow.bijector`` or ``flow.bijector.inverse``).
        ax: the axes to draw on; a new figure when ``None``.
        bounds: the box ``((x_min, x_max), (y_min, y_max))`` covered by the grid before the map.
        lines: grid lines in each direction.
        points_per_line: points along each line (more for a strongly curved map).
        colors: of the lines of constant ``x`` and of the lines of constant ``y``, so that a
            shear or a rotation shows.
        linewidth: the lines' width.
        title: an optional title.
        dtype: of the grid points (default: torch's default dtype); must match the map's.
        device: of the grid points (default: CPU); must match the map's.

    Returns:
        the axes; its line collection (``ax.collections[-1]``) has ``2 * lines`` mapped lines,
        first those of constant ``x``, then those of constant ``y``.
    """
    ax = _new_axes(ax)
    grid = _grid_lines(bounds, lines, points_per_line)
    mapped = _evaluate(lambda x: _first(bijector_fn(x)), _to(grid.reshape(-1, 2), dtype, device))
    if mapped.shape != (grid.shape[0] * grid.shape[1], 2):
        raise ValueError(
            f"plot_warped_grid: bijector_fn must map (B, 2) to (B, 2), got {tuple(mapped.shape)}"
        )
    segments = _to_numpy(mapped).reshape(grid.shape)
    line_colors = [colors[0]] * lines + [colors[1]] * lines
    ax.add_collection(LineCollection(segments, colors=line_colors, linewidths=linewidth))
    ax.autoscale_view()
    ax.set_aspect("equal")
    return _finish(ax, title)


def plot_trajectories(
    cnf: CNF,
    x: Tensor,
    *,
    ax: Axes | None = None,
    n_times: int = 50,
    color: str = "0.5",
    linewidth: float = 0.6,
    alpha: float = 0.7,
    start_color: str = "C0",
    end_color: str = "C1",
    size: float = 6.0,
    title: str | None = None,
) -> Axes:
    """The ODE paths of 2D points under a continuous-time flow, from ``t0`` (data) to ``t1``.

    Args:
        cnf: a :class:`~nf_course.bijectors.continuous.CNF` on ``R²`` (any object with its
            ``trajectory(x, n_times) -> (times, states (n_times, N, 2))`` method).
        x: the starting points ``z(t0)``, ``(N, 2)``, in the dtype and on the device of ``cnf``.
        ax: the axes to draw on; a new figure when ``None``.
        n_times: points along each path, equally spaced in time (the solver's own steps are
            finer; these are its dense output).
        color, linewidth, alpha: of the paths.
        start_color, end_color: of the dots at ``t0`` (the data points) and at ``t1`` (their
            images in noise space, ``cnf.forward(x)``).
        size: the dots' area in points².
        title: an optional title.

    Returns:
        the axes; ``ax.collections[0]`` holds the ``N`` paths (each ``(n_times, 2)``),
        ``ax.collections[1]`` the start points and ``ax.collections[2]`` the end points.
    """
    ax = _new_axes(ax)
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"plot_trajectories: x must be a tensor of shape (N, 2), got {shape}")
    _, states = cnf.trajectory(x, n_times=n_times)
    paths = _to_numpy(states).transpose(1, 0, 2)
    ax.add_collection(LineCollection(paths, colors=color, linewidths=linewidth, alpha=alpha))
    for points, dot_color in ((paths[:, 0], start_color), (paths[:, -1], end_color)):
        ax.scatter(points[:, 0], points[:, 1], s=size, color=dot_color, linewidths=0, zorder=3)
    ax.autoscale_view()
    ax.set_aspect("equal")
    return _finish(ax, title)


def plot_history(
    history: History | Mapping[str, object],
    ax: Axes | None = None,
    *,
    reference: float | None = None,
    reference_label: str = "reference",
    smooth: int = 1,
    log_scale: bool = False,
    title: str | None = None,
) -> Axes:
    r"""Training curves of :func:`~nf_course.training.fit`: training and validation losses.

    Args:
        history: a :class:`~nf_course.training.History`, or its ``as_dict()`` (e.g. loaded
            from a checkpoint's JSON).
        ax: the axes to draw on; a new figure when ``None``.
        reference: height of a dashed horizontal line, e.g. the entropy :math:`H(\pi)` (the
            floor of a forward-KL loss) or :math:`-\log Z` (the floor of a reverse-KL loss).
        reference_label: its legend entry.
        smooth: plot the moving average of the training loss over this many steps.
        log_scale: a logarithmic loss axis (for positive losses only).
        title: an optional title.

    Returns:
        the axes, with the line ``"train"``, then ``"validation"`` when the history has
        validation losses, then the reference line.
    """
    ax = _new_axes(ax)
    if isinstance(history, Mapping):
        history = History(**history)
    steps, losses = np.asarray(history.steps), np.asarray(history.losses)
    window = min(smooth, len(losses))
    if window > 1:
        losses = np.convolve(losses, np.full(window, 1.0 / window), mode="valid")
        steps = steps[window - 1 :]
    ax.plot(steps, losses, color="C0", linewidth=1.0, label="train")
    if history.val_steps:
        ax.plot(
            history.val_steps,
            history.val_losses,
            "o-",
            color="C1",
            markersize=3,
            linewidth=1.0,
            label="validation",
        )
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1.0, label=reference_label)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(_LOSS_LABELS.get(history.objective, "loss"))
    ax.legend(frameon=False)
    return _finish(ax, title)


def plot_images(
    x: Tensor | np.ndarray,
    ax: Axes | None = None,
    nrow: int = 8,
    *,
    padding: int = 1,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
) -> Axes:
    """A grid of grayscale images ``x (N, 1, H, W)`` (or ``(N, H, W)``), e.g. 8x8 digits.

    Args:
        x: the images, a tensor or an array.
        ax: the axes to draw on; a new figure when ``None``.
        nrow: images per row (as in torchvision's ``make_grid``); the last row may be short.
        padding: blank pixels between images (drawn in the axes' background color).
        cmap: the colormap.
        vmin, vmax: the values mapped to the ends of the colormap; the images' range when
            ``None``.
        title: an optional title.

    Returns:
        the axes; its image (``ax.images[-1]``) is the assembled grid, blanks set to NaN.
    """
    ax = _new_axes(ax)
    images = _to_numpy(x)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"plot_images: x must have shape (N, 1, H, W), got {images.shape}")
    count, height, width = images.shape
    rows, columns = -(-count // nrow), min(nrow, count)
    canvas = np.full(
        (rows * (height + padding) - padding, columns * (width + padding) - padding), np.nan
    )
    for index, image in enumerate(images):
        top, left = (height + padding) * (index // nrow), (width + padding) * (index % nrow)
        canvas[top : top + height, left : left + width] = image
    ax.imshow(canvas, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    return _finish(ax, title)


_LOSS_LABELS = {
    "forward_kl": "negative log-likelihood (nats)",
    "reverse_kl": r"$\mathbb{E}_q[\log q - \log \tilde\pi]$ (nats)",
}


def _new_axes(ax: Axes | None) -> Axes:
    """``ax`` itself, or the axes of a new ``FIGSIZE`` figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return ax


def _finish(ax: Axes, title: str | None) -> Axes:
    """Set the optional title and return ``ax``."""
    if title is not None:
        ax.set_title(title)
    return ax


def _to_numpy(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    """A float64 numpy copy of a tensor (detached, on the CPU) or an array-like."""
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _pixel_centres(low: float, high: float, count: int) -> Tensor:
    """The centres of ``count`` equal cells covering ``[low, high]``: ``(count,)``."""
    return low + (torch.arange(count, dtype=torch.float64) + 0.5) * (high - low) / count


def _grid_lines(bounds: Bounds, lines: int, points_per_line: int) -> Tensor:
    """Points along a regular grid's lines: ``(2 * lines, points_per_line, 2)``.

    First the lines of constant ``x`` (left to right), then those of constant ``y`` (bottom
    to top).
    """
    (x_min, x_max), (y_min, y_max) = bounds
    along_x = torch.linspace(x_min, x_max, points_per_line, dtype=torch.float64)
    along_y = torch.linspace(y_min, y_max, points_per_line, dtype=torch.float64)
    constant_x = [
        torch.stack([torch.full_like(along_y, x), along_y], dim=1)
        for x in torch.linspace(x_min, x_max, lines).tolist()
    ]
    constant_y = [
        torch.stack([along_x, torch.full_like(along_x, y)], dim=1)
        for y in torch.linspace(y_min, y_max, lines).tolist()
    ]
    return torch.stack(constant_x + constant_y)


def _to(points: Tensor, dtype: torch.dtype | None, device: torch.device | str | None) -> Tensor:
    """``points`` in ``dtype`` (default: torch's default dtype) on ``device`` (default: CPU)."""
    return points.to(dtype=dtype or torch.get_default_dtype(), device=device)


def _first(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    """The mapped points of a map's output: ``output`` itself or the first item of a tuple."""
    return output[0] if isinstance(output, tuple) else output


def _evaluate(fn: Callable[[Tensor], Tensor], points: Tensor, chunk_size: int = 10_000) -> Tensor:
    """``fn`` on ``points``, ``chunk_size`` rows at a time, without gradients."""
    with torch.no_grad():
        return torch.cat([fn(chunk) for chunk in points.split(chunk_size)])
