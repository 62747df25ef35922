"""Assignment 06, the building blocks of Glow (``solutions/06_glow``; book chapter 9): ActNorm with
its data-dependent initialization, the LU-parametrized invertible 1x1 convolution and squeeze.

Images are never square, batch sizes never equal a channel count, the permutation ``P`` of the
1x1 convolution is never its own transpose, and every layer is checked with perturbed (generic)
parameters, so that ``H·H`` for ``H·W``, a sum over the wrong axis, ``Pᵀ`` for ``P`` or ``Wᵀ`` for
``W`` are never right by accident."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from nf_course.bijectors import Squeeze
from nf_course.bijectors.linear import LUMatrix
from nf_course.checks import check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, check_close, randn


def images(
    batch: int,
    channels: int,
    height: int,
    width: int,
    seed: int,
    shift: float = 0.0,
    spread: float = 1.0,
) -> Tensor:
    """Random images ``(batch, channels, height, width)`` with per-channel means and scales."""
    generator = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    means = shift + 2 * torch.randn(channels, 1, 1, generator=generator, dtype=dtype)
    scales = spread * torch.exp(torch.randn(channels, 1, 1, generator=generator, dtype=dtype))
    noise = torch.randn(batch, channels, height, width, generator=generator, dtype=dtype)
    return means + scales * noise


def lu_reference(layer: nn.Module) -> LUMatrix:
    """nf_course's LUMatrix holding the factors ``P``, ``lower``, ``upper``, ``s`` of ``layer``
    (float64): its ``matrix()`` is ``P L U`` and its ``log_abs_det()`` is ``Σ log|s_c|``."""
    reference = LUMatrix(len(layer.s)).double()
    with torch.no_grad():
        reference.P.copy_(layer.P)
        reference.L.copy_(layer.lower)
        reference.U.copy_(layer.upper)
        reference.log_s.copy_(torch.log(torch.abs(layer.s)))
        reference.sign_s.copy_(torch.sign(layer.s))
    return reference


def _shape(x: Tensor) -> str:
    return "×".join(map(str, x.shape))


# ----------------------------------------------------------------------------- ActNorm


def _check_first_batch(layer: nn.Module, x: Tensor) -> None:
    """The first forward sets ``loc`` to the channel means and ``log σ`` to the log of the
    channel standard deviations (with or without Bessel's correction)."""
    parameters = (layer.loc, layer.log_scale)
    z, _ = layer(x)
    if layer.loc is not parameters[0] or layer.log_scale is not parameters[1]:
        raise GradingCheckError(
            "initialize must write into the existing parameters (copy_ under torch.no_grad), "
            "not replace them: an optimizer made before the first batch would train the old ones"
        )
    if not bool(layer.initialized):
        raise GradingCheckError("after the first forward, the buffer initialized must be True")
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
    count = per_channel.shape[1]
    setting = f"after a first batch of shape {_shape(x)}"
    check_close(
        layer.loc, per_channel.mean(dim=1), what=f"loc {setting} (the mean of each channel)"
    )
    # 1/count covers both std estimators (they differ by a factor √(n/(n-1))) and the 1e-6.
    check_close(
        layer.log_scale,
        torch.log(per_channel.std(dim=1, correction=0)),
        what=f"log_scale {setting} (the log of each channel's standard deviation)",
        atol=1.0 / count,
    )
    z_per_channel = z.detach().transpose(0, 1).reshape(x.shape[1], -1)
    check_close(
        z_per_channel.std(dim=1, correction=0),
        torch.ones(x.shape[1], dtype=x.dtype),
        what=f"the channel standard deviations of z {setting}",
        atol=1.0 / count,
    )


def _expected_z(layer: nn.Module, x: Tensor) -> Tensor:
    """``(x - loc)·exp(-log_scale)`` with the layer's parameters (the log-det is left to the
    checker, which compares it with the Jacobian and names a missing or extra factor)."""
    loc, log_scale = layer.loc.detach(), layer.log_scale.detach()
    return (x - loc[:, None, None]) * torch.exp(-log_scale[:, None, None])


def check_actnorm(actnorm: Callable[[int], nn.Module]) -> None:
    """``ActNorm(channels)``: the initialization from the first batch (per-channel statistics
    over batch and pixels, written into the existing parameters, once, remembered by the buffer
    ``initialized`` across ``state_dict``), the formulas afterwards, and every bijector check
    on a fresh and on a perturbed layer."""
    layer = actnorm(3)
    first = images(10, 3, 3, 5, seed=11)
    first = first + 1.5 * randn(10, 1, 1, 1, seed=12)  # samples of different brightness
    _check_first_batch(layer, first)
    initial = {name: value.clone() for name, value in layer.state_dict().items()}
    second = images(7, 3, 3, 5, seed=13, shift=3.0, spread=2.0)
    z, _ = layer(second)
    if not torch.equal(layer.loc.detach(), initial["loc"]):
        raise GradingCheckError(
            "loc changed on the second batch: the initialization must happen only once"
        )
    expected_z = _expected_z(layer, second)
    check_close(z, expected_z, what="forward on a second batch: (x - loc)·exp(-log_scale)")
    reloaded = actnorm(3)
    reloaded.load_state_dict(initial)
    z, _ = reloaded(second)
    if not torch.equal(reloaded.loc.detach(), initial["loc"]):
        raise GradingCheckError(
            "a layer loaded with load_state_dict initialized again on its first batch: keep "
            "the record in the buffer initialized (it is saved in the state dict), not in a "
            "Python attribute"
        )
    check_close(z, expected_z, what="forward of a layer loaded with load_state_dict")
    # The checker's copy of a fresh layer initializes on its first batch, and never again.
    check_bijector(actnorm(2), images(12, 2, 6, 3, seed=14))
    fresh = actnorm(4)
    fresh(images(10, 4, 2, 7, seed=15))
    check_bijector(perturb_parameters(fresh, seed=16), images(9, 4, 2, 7, seed=17))


# ----------------------------------------------------------------------------- 1x1 convolution

# (channels, height, width, batch, seed)
INVCONV_CASES = ((3, 2, 7, 5, 21), (5, 4, 3, 3, 22), (6, 3, 1, 4, 23))


def _cyclic_permutation(channels: int) -> Tensor:
    """The permutation matrix of ``c -> c + 1 mod C``: for C ≥ 3 not its own transpose."""
    return torch.eye(channels, dtype=torch.float64).roll(1, dims=0)


def check_invconv(invconv: Callable[..., nn.Module]) -> None:
    """``InvConv1x1(channels, seed=)`` with a cyclic ``P`` and perturbed factors: ``weight()``
    is ``P L U``, ``log_abs_det_weight()`` is ``Σ log|s|``, ``forward`` multiplies every
    pixel's channel vector by ``W``, and every bijector check passes."""
    for channels, height, width, batch, seed in INVCONV_CASES:
        layer = invconv(channels, seed=seed).double()
        with torch.no_grad():
            layer.P.copy_(_cyclic_permutation(channels))
        layer = perturb_parameters(layer, seed=seed + 1)
        reference = lu_reference(layer)
        weight = reference.matrix().detach()
        setting = f"C = {channels}, P a cyclic permutation, perturbed L, U and s"
        check_close(layer.weight(), weight, what=f"W = P L U ({setting})")
        check_close(
            torch.as_tensor(layer.log_abs_det_weight()).reshape(()),
            reference.log_abs_det().detach(),
            what=f"log|det W| ({setting}; s = {[round(v, 3) for v in layer.s.tolist()]})",
        )
        x = images(batch, channels, height, width, seed=seed + 2)
        z, _ = layer(x)
        what = f"z = forward(x) on a {_shape(x)} batch (z[:, :, h, w] = W x[:, :, h, w])"
        transposed = torch.einsum("ji,bjhw->bihw", weight, x)
        if isinstance(z, Tensor) and z.shape == x.shape and torch.allclose(z.detach(), transposed):
            raise GradingCheckError(
                f"{what} is Wᵀ x: a row vector of channels times W (x.permute(0, 2, 3, 1) @ W) "
                "multiplies by the transpose"
            )
        check_close(z, torch.einsum("ij,bjhw->bihw", weight, x), what=what)
        check_bijector(layer, x)


# ----------------------------------------------------------------------------- squeeze


def _first_non_local_pixel(z: Tensor, x: Tensor) -> str:
    """Where the values at an output pixel are not those of the input's 2x2 block, or ``""``."""
    expected = Squeeze()(x)[0].sort(dim=1).values
    found = z.sort(dim=1).values
    wrong = (found != expected).any(dim=1).nonzero().tolist()
    if not wrong:
        return ""
    b, i, j = wrong[0]
    return f"sample {b}, output pixel ({i}, {j})"


def check_squeeze(squeeze: Callable[[], nn.Module]) -> None:
    """``Squeeze()``: shapes, each output pixel holds exactly the values of its input 2x2 block
    (all channels), in the same channel order at every pixel, and every bijector check."""
    for batch, channels, height, width in ((3, 2, 6, 4), (2, 1, 2, 8)):
        x = torch.arange(batch * channels * height * width, dtype=torch.float64)
        x = x.reshape(batch, channels, height, width)
        z, _ = squeeze()(x)
        expected_shape = (batch, 4 * channels, height // 2, width // 2)
        if tuple(z.shape) != expected_shape:
            raise GradingCheckError(
                f"squeeze of a {_shape(x)} batch gave shape {tuple(z.shape)}, expected "
                f"{expected_shape} = (B, 4C, H/2, W/2)"
            )
        where = _first_non_local_pixel(z, x)
        if where:
            raise GradingCheckError(
                f"squeeze of a {_shape(x)} batch: at {where} the 4C values are not those of "
                "the 2x2 block at rows 2i, 2i+1 and columns 2j, 2j+1 of every channel (the "
                "blocks must be local: a plain reshape groups pixels that are far apart)"
            )
        reference = Squeeze()(x)[0]
        # Channel k of z must be one fixed channel of the reference: the value at pixel (0, 0)
        # of the first sample names it.
        for k in range(z.shape[1]):
            (match,) = (reference[0, :, 0, 0] == z[0, k, 0, 0]).nonzero()[0].tolist()
            if not torch.equal(z[:, k], reference[:, match]):
                raise GradingCheckError(
                    f"squeeze of a {_shape(x)} batch: output channel {k} does not hold the same "
                    "position of the 2x2 block (and the same input channel) at every pixel; the "
                    "order along the channels must be fixed"
                )
    check_bijector(squeeze(), images(3, 1, 8, 6, seed=32))
    check_bijector(squeeze(), images(2, 5, 2, 6, seed=33))
