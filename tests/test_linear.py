"""Linear flows: permutations, full, LU and QR matrices, and the invertible 1x1 convolution."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from helpers import perturbed, randn
from torch import Tensor, nn

from nf_course import Flow, StandardNormal
from nf_course.bijectors.linear import (
    InvConv1x1,
    Linear,
    LinearLU,
    LinearQR,
    Permutation,
    Reverse,
)
from nf_course.checks import check_bijector

DIM = 5


VECTOR_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "Permutation": lambda dim: Permutation(dim, seed=3),
    "Reverse": Reverse,
    "Linear": Linear,
    "LinearLU": LinearLU,
    "LinearQR": LinearQR,
}
MATRIX_LAYERS = {"Linear": Linear, "LinearLU": LinearLU, "LinearQR": LinearQR}


# ----------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("batch", [2, 17])
@pytest.mark.parametrize("name", list(VECTOR_LAYERS))
def test_vector_layers_pass_the_checker_with_perturbed_parameters(name: str, batch: int):
    layer = perturbed(VECTOR_LAYERS[name](DIM))
    report = check_bijector(layer, randn(batch, DIM, seed=batch))
    assert report.dtype == torch.float64
    if name in MATRIX_LAYERS:
        # Gradients reach every parameter, and an update is seen (no stale cache).
        assert report["gradients"].skipped is None
        assert report["parameter_update"].skipped is None


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (2, 3, 2, 5)])
@pytest.mark.parametrize("lu", [True, False])
def test_inv_conv_1x1_passes_the_checker_on_non_square_images(lu: bool, shape: tuple[int, ...]):
    layer = perturbed(InvConv1x1(shape[1], lu=lu))
    report = check_bijector(layer, randn(*shape, seed=1))
    assert report["gradients"].skipped is None
    assert report["parameter_update"].skipped is None


# ----------------------------------------------------------------------------- analytic checks


@pytest.mark.parametrize("name", list(MATRIX_LAYERS))
def test_matrix_layers_compute_W_x_plus_b_with_log_det_of_W(name: str):
    layer = perturbed(MATRIX_LAYERS[name](DIM))
    x = randn(7, DIM, seed=2)
    W = layer.W.matrix()
    z, log_det = layer(x)
    torch.testing.assert_close(z, x @ W.T + layer.b)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(W).logabsdet.expand(7))
    x_back, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_log_det, -log_det)


def test_linear_lu_log_det_is_the_sum_of_log_s_and_equals_slogdet_of_P_L_U():
    layer = perturbed(LinearLU(6))
    P, L, U = layer.W.factors()
    eye = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(P @ P.T, eye)  # a permutation matrix: orthogonal, 0/1 entries
    assert set(P.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(torch.diagonal(L), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(L, torch.tril(L))
    torch.testing.assert_close(U, torch.triu(U))
    W = layer.W.matrix()
    torch.testing.assert_close(W, P @ L @ U)
    _, log_det = layer(randn(3, 6))
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(W).logabsdet)
    torch.testing.assert_close(log_det[0], layer.W.log_s.sum())


def test_linear_lu_decomposes_once_and_fits_the_factors():
    layer = LinearLU(4, seed=7)
    assert {name for name, _ in layer.named_parameters()} == {"b", "W.L", "W.U", "W.log_s"}
    assert {name for name, _ in layer.named_buffers()} == {"W.P", "W.sign_s"}
    # The factors are those of the orthogonal matrix that Linear starts from with the same seed.
    W = layer.W.matrix()
    torch.testing.assert_close(W, Linear(4, seed=7).W.W)
    torch.testing.assert_close(W @ W.T, torch.eye(4), atol=1e-6, rtol=0)
    assert not torch.allclose(W, LinearLU(4, seed=8).W.matrix())


def test_linear_qr_Q_stays_orthogonal_and_R_upper_with_positive_diagonal():
    layer = perturbed(LinearQR(DIM), scale=1.0)
    Q, R = layer.W.factors()
    eye = torch.eye(DIM, dtype=torch.float64)
    assert (Q.T @ Q - eye).abs().max() < 1e-12
    assert (Q @ Q.T - eye).abs().max() < 1e-12
    torch.testing.assert_close(R, torch.triu(R))
    assert (torch.diagonal(R) > 0).all()
    W = layer.W.matrix()
    torch.testing.assert_close(W, Q @ R)
    _, log_det = layer(randn(3, DIM))
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(W).logabsdet)
    torch.testing.assert_close(log_det[0], layer.W.log_r.sum())


@pytest.mark.parametrize("lu", [True, False])
def test_inv_conv_1x1_is_a_1x1_convolution_with_H_times_W_log_det(lu: bool):
    layer = perturbed(InvConv1x1(3, lu=lu))
    x = randn(2, 3, 4, 6, seed=3)
    W = layer.W.matrix()
    z, log_det = layer(x)
    torch.testing.assert_close(z, F.conv2d(x, W[:, :, None, None]))
    expected = 4 * 6 * torch.linalg.slogdet(W).logabsdet
    torch.testing.assert_close(log_det, expected.expand(2))
    assert abs(expected.item()) > 1.0  # the perturbation made |det W| far from 1


def test_permutation_is_a_seeded_permutation_drawn_without_the_global_rng():
    state = torch.get_rng_state()
    layer = Permutation(10, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(layer.permutation.sort().values, torch.arange(10))
    assert torch.equal(layer.permutation, Permutation(10, seed=4).permutation)
    assert not torch.equal(layer.permutation, Permutation(10, seed=5).permutation)
    x = randn(3, 10)
    z, log_det = layer(x)
    torch.testing.assert_close(z, x[:, layer.permutation])
    assert torch.equal(log_det, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("make", "other"),
    [
        (lambda: Permutation(8, seed=1), lambda: Permutation(8, seed=2)),
        (lambda: perturbed(LinearLU(8, seed=1)), lambda: LinearLU(8, seed=2).double()),
    ],
    ids=["Permutation", "LinearLU"],
)
def test_state_dict_save_and_load_restores_the_map(
    make: Callable[[], nn.Module], other: Callable[[], nn.Module]
):
    layer, restored = make(), other()
    x = randn(4, 8)
    assert not torch.allclose(restored(x)[0], layer(x)[0])
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(restored(x)[0], layer(x)[0])
    torch.testing.assert_close(restored.inverse(x)[0], layer.inverse(x)[0])


def test_reverse_flips_the_features_and_twice_is_the_identity():
    layer = Reverse(DIM)
    x = randn(3, DIM)
    z, log_det = layer(x)
    torch.testing.assert_close(z, x.flip(1))
    assert torch.equal(log_det, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(layer(z)[0], x)
    torch.testing.assert_close(layer.inverse(x)[0], z)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", list(MATRIX_LAYERS))
def test_maximum_likelihood_fits_a_correlated_gaussian(name: str):
    """A linear flow with a standard normal base can represent every Gaussian, so its NLL on the
    data can reach the NLL of the data's own Gaussian fit, ``Ĥ = ½ log det(2πe Σ̂)`` with ``Σ̂``
    the sample covariance: that is the exact minimum, never beaten (a lower value would mean a
    wrong log-det), and it differs from the true entropy ``H = ½ log det(2πe Σ)`` only by sampling
    error, of standard deviation about ``sqrt(D / 2N) ≈ 0.019`` nats for ``D = 3, N = 4096``.
    """
    Sigma = torch.tensor([[2.0, 1.2, -0.6], [1.2, 1.5, 0.3], [-0.6, 0.3, 1.0]], dtype=torch.float64)
    mu = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    x = mu + randn(4096, 3, seed=5) @ torch.linalg.cholesky(Sigma).T
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * Sigma).item()
    sample_entropy = 0.5 * torch.logdet(2 * math.pi * math.e * torch.cov(x.T, correction=0)).item()

    flow = Flow(MATRIX_LAYERS[name](3), StandardNormal(3)).double()
    assert flow.forward_kl(x).item() > entropy + 1.0  # the fresh flow is far from the data
    optimizer = torch.optim.Adam(flow.parameters(), lr=0.1)
    for _ in range(150):
        optimizer.zero_grad()
        loss = flow.forward_kl(x)
        loss.backward()
        optimizer.step()
    nll = flow.forward_kl(x).item()
    # Converged to the maximum-likelihood Gaussian (the gap is below 1e-5 at 150 steps)...
    assert sample_entropy - 1e-9 <= nll < sample_entropy + 1e-3
    # ...which is within three sampling standard deviations of the true entropy.
    assert abs(nll - entropy) < 0.06


# ----------------------------------------------------------------------------- errors


def _wrong(
    layer: nn.Module, method: str, value: Tensor, error: type[Exception], message: str, case: str
) -> object:
    """A wrong-input case: ``layer.method(value)`` raises ``error`` matching ``message``."""
    return pytest.param(layer, method, value, error, message, id=case)


WRONG_INPUTS = [
    _wrong(
        Linear(4),
        "forward",
        torch.zeros(3, 5),
        ValueError,
        r"Linear.forward: x must have shape \(B, 4\), got \(3, 5\)",
        "Linear-width",
    ),
    _wrong(
        LinearLU(4),
        "inverse",
        torch.zeros(4),
        ValueError,
        r"LinearLU.inverse: z must have shape \(B, 4\), got \(4,\)",
        "LinearLU-no-batch",
    ),
    _wrong(
        LinearQR(4),
        "forward",
        torch.zeros(2, 4, dtype=torch.int64),
        TypeError,
        r"LinearQR.forward: x must have a floating dtype .*got torch.int64",
        "LinearQR-int64",
    ),
    _wrong(
        Permutation(4),
        "forward",
        torch.zeros(2, 3),
        ValueError,
        r"Permutation.forward: x must have shape \(B, 4\), got \(2, 3\)",
        "Permutation-width",
    ),
    _wrong(
        Reverse(4),
        "inverse",
        torch.zeros(2, 2, 2),
        ValueError,
        r"Reverse.inverse: z must have shape \(B, 4\), got \(2, 2, 2\)",
        "Reverse-3d",
    ),
    _wrong(
        InvConv1x1(3),
        "forward",
        torch.zeros(2, 3),
        ValueError,
        r"InvConv1x1.forward: x must be a batch of images \(B, 3, H, W\), got shape \(2, 3\)",
        "InvConv1x1-2d",
    ),
    _wrong(
        InvConv1x1(3, lu=False),
        "inverse",
        torch.zeros(2, 4, 5, 5),
        ValueError,
        r"InvConv1x1.inverse: z must be .* \(B, 3, H, W\), got shape \(2, 4, 5, 5\)",
        "InvConv1x1-channels",
    ),
    _wrong(
        InvConv1x1(3),
        "forward",
        torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
        TypeError,
        r"InvConv1x1.forward: x must have a floating dtype .*got torch.uint8",
        "InvConv1x1-uint8",
    ),
]


@pytest.mark.parametrize(("layer", "method", "value", "error", "message"), WRONG_INPUTS)
def test_wrong_inputs_raise_errors_that_name_the_expected_shape_or_dtype(
    layer: nn.Module, method: str, value: Tensor, error: type[Exception], message: str
):
    with pytest.raises(error, match=message):
        getattr(layer, method)(value)


@pytest.mark.parametrize("cls", [Linear, LinearLU, LinearQR, Permutation, Reverse, InvConv1x1])
def test_sizes_must_be_positive_ints(cls: type[nn.Module]):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: .* must be at least 1, got 0"):
        cls(0)
