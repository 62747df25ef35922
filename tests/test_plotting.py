"""Tests of nf_course.plotting: each function draws the expected artists and returns its axes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import Tensor

from nf_course.bijectors.continuous import CNF
from nf_course.plotting import (
    plot_density,
    plot_history,
    plot_images,
    plot_samples,
    plot_trajectories,
    plot_warped_grid,
)
from nf_course.training import History

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def standard_normal_log_prob(x: Tensor) -> Tensor:
    return -0.5 * x.square().sum(dim=1) - math.log(2 * math.pi)


def test_plot_density_shows_the_density_on_the_grid() -> None:
    ax = plot_density(standard_normal_log_prob, resolution=50, chunk_size=300, title="N(0, I)")
    (image,) = ax.images
    values = np.asarray(image.get_array())
    assert values.shape == (50, 50)
    # The pixel centres nearest the origin are at (±0.08, ±0.08): the peak 1/(2π) times
    # exp(-0.08²) there.
    assert values.max() == pytest.approx(math.exp(-(0.08**2)) / (2 * math.pi), rel=1e-6)
    assert values.sum() * (8 / 50) ** 2 == pytest.approx(1.0, abs=1e-3)  # the box holds ~all mass
    assert tuple(image.get_extent()) == (-4, 4, -4, 4)
    assert ax.get_title() == "N(0, I)"


def test_plot_density_orientation_and_normalization() -> None:
    def energy(x: Tensor) -> Tensor:  # an unnormalized Gaussian centred at (2, -1)
        return -0.5 * (x - torch.tensor([2.0, -1.0])).square().sum(dim=1)

    bounds = ((0.0, 4.0), (-2.0, 0.0))
    ax = plot_density(lambda x: 10 + energy(x), bounds=bounds, resolution=40, normalize=True)
    values = np.asarray(ax.images[0].get_array())
    row, column = np.unravel_index(values.argmax(), values.shape)
    assert column in (19, 20) and row in (19, 20)  # centre of the box: x = 2, y = -1
    assert values.sum() * (4 / 40) * (2 / 40) == pytest.approx(1.0)
    assert ax.images[0].origin == "lower"


def test_plot_density_checks_the_output_shape() -> None:
    with pytest.raises(ValueError, match=r"must map \(B, 2\) to \(B,\)"):
        plot_density(lambda x: x, resolution=10)


def test_plot_density_uses_the_given_axes_and_dtype() -> None:
    _, ax = plt.subplots()
    dtypes = set()

    def log_prob(x: Tensor) -> Tensor:
        dtypes.add(x.dtype)
        return standard_normal_log_prob(x)

    assert plot_density(log_prob, ax=ax, resolution=10, dtype=torch.float64) is ax
    assert dtypes == {torch.float64}


def test_plot_samples_scatters_the_points() -> None:
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ax = plot_samples(x, bounds=((-3, 3), (-2, 2)))
    (scatter,) = ax.collections
    np.testing.assert_allclose(scatter.get_offsets(), x.detach().numpy(), rtol=1e-6)
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-2, 2)
    labels = np.arange(300) % 3
    colored = plot_samples(x, c=labels).collections[0]
    np.testing.assert_array_equal(colored.get_array(), labels)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot_samples(torch.zeros(5, 3))


def test_plot_warped_grid_maps_every_grid_line() -> None:
    bounds = ((-1.0, 1.0), (-2.0, 2.0))
    identity = plot_warped_grid(lambda x: x, bounds=bounds, lines=5, points_per_line=11)
    (grid,) = identity.collections
    segments = grid.get_segments()
    assert len(segments) == 10 and all(segment.shape == (11, 2) for segment in segments)
    np.testing.assert_allclose(segments[0][:, 0], -1.0)  # first line: x = x_min, bottom to top
    np.testing.assert_allclose(segments[0][[0, -1], 1], [-2.0, 2.0])
    np.testing.assert_allclose(segments[9][:, 1], 2.0)  # last line: y = y_max
    # A bijector direction returns (output, log_det); the grid follows the map's output.
    scale = torch.tensor([2.0, -3.0])
    warped = plot_warped_grid(
        lambda x: (x * scale, torch.zeros(x.shape[0])), bounds=bounds, lines=5, points_per_line=11
    )
    for before, after in zip(segments, warped.collections[0].get_segments(), strict=True):
        np.testing.assert_allclose(after, before * scale.numpy(), rtol=1e-6)


def test_plot_history_draws_train_validation_and_reference() -> None:
    history = History(
        objective="forward_kl",
        steps=[1, 2, 3, 4],
        losses=[4.0, 3.0, 2.5, 2.4],
        lrs=[1e-3] * 4,
        val_steps=[2, 4],
        val_losses=[3.1, 2.6],
        best_step=4,
        best_val=2.6,
    )
    ax = plot_history(history, reference=2.0, reference_label="H(π)", title="fit")
    assert [line.get_label() for line in ax.get_lines()] == ["train", "validation", "H(π)"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [3.1, 2.6])
    assert ax.get_yscale() == "linear" and "log-likelihood" in ax.get_ylabel()
    smoothed = plot_history(history.as_dict(), smooth=2, log_scale=True)
    (train,) = smoothed.get_lines()[:1]
    np.testing.assert_allclose(train.get_xdata(), [2, 3, 4])
    np.testing.assert_allclose(train.get_ydata(), [3.5, 2.75, 2.45])
    assert smoothed.get_yscale() == "log"


def test_plot_history_without_validation() -> None:
    history = History(objective="reverse_kl", steps=[1, 2], losses=[1.0, 0.5], lrs=[0.1, 0.1])
    ax = plot_history(history, smooth=10)
    assert [line.get_label() for line in ax.get_lines()] == ["train"]
    assert r"\log q" in ax.get_ylabel()


def test_plot_images_assembles_a_padded_grid() -> None:
    images = torch.arange(5 * 64, dtype=torch.float32).reshape(5, 1, 8, 8)
    ax = plot_images(images, nrow=3, padding=1)
    canvas = np.asarray(ax.images[0].get_array())
    assert canvas.shape == (2 * 8 + 1, 3 * 8 + 2)
    np.testing.assert_array_equal(canvas[:8, 9:17], images[1, 0].numpy())  # row 0, column 1
    np.testing.assert_array_equal(canvas[9:, 9:17], images[4, 0].numpy())  # row 1, column 1
    assert np.isnan(canvas[8, :]).all() and np.isnan(canvas[:, 8]).all()  # blank padding
    assert not ax.axison
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        plot_images(torch.zeros(2, 3, 8, 8))


def test_plot_trajectories_draws_the_ode_paths() -> None:
    class Rotation(torch.nn.Module):  # dz/dt = (-z2, z1): circles, a rotation by t1 - t0
        def forward(self, t: Tensor, z: Tensor) -> Tensor:
            return torch.stack([-z[:, 1], z[:, 0]], dim=1)

    cnf = CNF(2, t1=math.pi / 2, field=Rotation(), rtol=1e-9, atol=1e-9)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.5, 1.0]], dtype=torch.float64)
    ax = plot_trajectories(cnf, x, n_times=9, title="paths")
    paths, starts, ends = ax.collections
    segments = paths.get_segments()
    assert len(segments) == 3 and all(segment.shape == (9, 2) for segment in segments)
    for segment, point in zip(segments, x.numpy(), strict=True):
        np.testing.assert_allclose(segment[0], point)
        np.testing.assert_allclose(segment[-1], [-point[1], point[0]], atol=1e-7)  # 90° turn
        np.testing.assert_allclose(np.linalg.norm(segment, axis=1), np.linalg.norm(point))
    np.testing.assert_allclose(starts.get_offsets(), x.numpy())
    np.testing.assert_allclose(ends.get_offsets(), cnf(x)[0].detach().numpy(), atol=1e-7)
    assert ax.get_title() == "paths"
    _, given = plt.subplots()
    assert plot_trajectories(cnf, x, ax=given) is given
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot_trajectories(cnf, torch.zeros(4, 3, dtype=torch.float64))
