"""Coupling layers: NICE's additive coupling and RealNVP's affine coupling, for vectors and
images, with their default conditioner networks (:func:`mlp`, :func:`conv_net`; any module can
be given instead, ``net=``). One law for all of them: ``_Coupling`` writes ``forward`` and
``inverse`` once (split, transform the moved part given the other, merge); the affine law is
written once (the additive coupling is its ``s = 0`` case) and the spline coupling of
:mod:`nf_course.bijectors.spline` brings its own.

Chapter: ``book/08_coupling_flows.md`` (Dinh et al. 2015, NICE; Dinh et al. 2017, RealNVP); the
spline coupling is in :mod:`nf_course.bijectors.spline`; tests: ``tests/test_coupling.py``;
assignment: ``solutions/04_coupling``; benchmarks: ``benchmarks/kl_2d.py``,
``benchmarks/peer_step.py``, ``benchmarks/ar_costs.py``. Isachenko (AI Masters, 2024) and Yang
and Ryu (2020) put the scale in the generative direction; here it multiplies in ``forward``, so
their scale is ``exp(-s)``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor, nn

from nf_course.common import choice, positive_int, validate_batch, validate_images, zero_or_one
from nf_course.core import Bijector

__all__ = ["AdditiveCoupling", "AffineCoupling", "AffineCoupling2d", "conv_net", "mlp"]

#: The image masks of :class:`AffineCoupling2d`.
MASKS = ("checkerboard", "channel")


def _split_mask(n: int, parity: int, pattern: str) -> Tensor:
    """Boolean mask ``(n,)``, ``True`` on the conditioning part ``A``.

    ``"alternating"`` puts the even indices in ``A`` (NICE's split), ``"half"`` the first
    ``n // 2`` (RealNVP's and Glow's channel split); ``parity = 1`` swaps ``A`` and ``B``.
    """
    index = torch.arange(n)
    in_a = index % 2 == 0 if pattern == "alternating" else index < n // 2
    return in_a ^ bool(parity)


def mlp(in_features: int, out_features: int, hidden: int, layers: int) -> nn.Sequential:
    """The conditioner of the vector couplings: ``(B, in_features) -> (B, out_features)``.

    ``layers`` hidden layers of width ``hidden`` with SiLU activations (smooth, so that the
    flow's density is smooth and no Jacobian entry vanishes on a whole region, as with ReLU).
    No BatchNorm or Dropout: they would make a sample's output depend on the batch or on chance.
    The output layer starts at zero, so a coupling built on it starts as the identity.
    """
    widths = [in_features] + [hidden] * layers
    modules: list[nn.Module] = []
    for width_in, width_out in pairwise(widths):
        modules += [nn.Linear(width_in, width_out), nn.SiLU()]
    output = nn.Linear(hidden, out_features)
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    return nn.Sequential(*modules, output)


def conv_net(in_channels: int, out_channels: int, hidden: int, layers: int) -> nn.Sequential:
    """The conditioner of :class:`AffineCoupling2d`: ``(B, in, H, W) -> (B, out, H, W)``.

    ``layers`` hidden 3x3 convolutions (padding 1, so ``H`` and ``W`` are kept) with ``hidden``
    channels and SiLU activations, then a 3x3 output convolution that starts at zero.
    """
    widths = [in_channels] + [hidden] * layers
    modules: list[nn.Module] = []
    for width_in, width_out in pairwise(widths):
        modules += [nn.Conv2d(width_in, width_out, kernel_size=3, padding=1), nn.SiLU()]
    output = nn.Conv2d(hidden, out_channels, kernel_size=3, padding=1)
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    return nn.Sequential(*modules, output)


def _conditioner_net(
    net: nn.Module | None, default: Callable[[], nn.Module], where: str
) -> nn.Module:
    """``net`` if one is given (any module; its output shape is checked at each call), else
    ``default()``."""
    if net is None:
        return default()
    if not isinstance(net, nn.Module):
        raise TypeError(f"{where}: net must be a torch.nn.Module, got {type(net).__name__}")
    return net


class _Coupling(Bijector):
    r"""The coupling law shared by every layer of this module and by the spline coupling.

    The input ``y`` splits into a conditioning part ``y_A``, which passes unchanged, and a moved
    part ``y_B``, which an elementwise law conditioned on ``y_A`` transforms:
    :math:`z_B = g_{c(y_A)}(y_B)`. Subclasses give the split (:meth:`_parts` and :meth:`_merge`:
    by default indices along dimension 1, the coordinates of a vector or the channels of an
    image) and the law (:meth:`transform`); ``forward`` and ``inverse`` are written once, here.
    """

    index_A: Tensor
    index_B: Tensor

    def _check(self, y: object, method: str, name: str) -> Tensor:
        """Validate the input of ``method`` and return it as a tensor."""
        raise NotImplementedError

    def transform(self, y_B: Tensor, y_A: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """The law: ``(g(y_B) or g⁻¹(y_B), its log-determinant (B,))``, conditioned on ``y_A``."""
        raise NotImplementedError

    def _parts(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(y_A, y_B)``: what the conditioner reads, and what moves."""
        return y[:, self.index_A], y[:, self.index_B]

    def _merge(self, y: Tensor, out_B: Tensor) -> Tensor:
        """``y`` with its moved part replaced by ``out_B`` (a new tensor, same shape as ``y``)."""
        return y.index_copy(1, self.index_B, out_B)

    def _split(self, y: object, method: str, name: str) -> tuple[Tensor, Tensor]:
        return self._parts(self._check(y, method, name))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x -> (z, log_det (B,))``: ``z_A = x_A``, ``z_B = g_{c(x_A)}(x_B)``."""
        x_A, x_B = self._split(x, "forward", "x")
        z_B, log_det = self.transform(x_B, x_A, inverse=False)
        return self._merge(x, z_B), log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z -> (x, log_det (B,))``: ``x_A = z_A``, ``x_B = g_{c(z_A)}^{-1}(z_B)``."""
        z_A, z_B = self._split(z, "inverse", "z")
        x_B, log_det = self.transform(z_B, z_A, inverse=True)
        return self._merge(z, x_B), log_det


class _AffineLaw(_Coupling):
    r"""The affine law :math:`z_B = y_B \odot e^{s} + t`, ``(s, t) = conditioner(y_A)``; its
    log-determinant is the sum of ``s`` over a sample (``s`` is zero wherever nothing moves)."""

    def conditioner(self, y_A: Tensor) -> tuple[Tensor, Tensor]:
        """``(s, t)``, each the shape of the moved part, from the conditioning part ``y_A``."""
        raise NotImplementedError

    def _net(self, y_A: Tensor, outputs: int, moved: tuple[int, ...]) -> tuple[Tensor, ...]:
        """``self.net(y_A)`` checked to hold ``outputs`` values per moved element (shape
        ``(B, outputs·moved[0], *moved[1:])``), cut into ``outputs`` tensors ``(B, *moved)``."""
        out = self.net(y_A)
        expected = (y_A.shape[0], outputs * moved[0], *moved[1:])
        if not isinstance(out, Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{type(self).__name__}: the conditioner net must return shape {expected} for "
                f"an input of shape {tuple(y_A.shape)}, got {got}"
            )
        return out.chunk(outputs, dim=1)

    def transform(self, y_B: Tensor, y_A: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """``(y_B ⊙ exp(s) + t, Σ s)``, or ``((y_B - t) ⊙ exp(-s), -Σ s)`` for the inverse."""
        s, t = self.conditioner(y_A)
        log_det = s.flatten(1).sum(dim=1)
        if inverse:
            return (y_B - t) * torch.exp(-s), -log_det
        return y_B * torch.exp(s) + t, log_det


class _VectorCoupling(_Coupling):
    """Shared part of the vector couplings: the alternating mask, its index buffers, the
    conditioner.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        outputs_per_coordinate: conditioner outputs per coordinate of ``x_B`` (1 for ``t``,
            2 for ``(s, t)``).
        hidden, layers: width and depth of the default conditioner (:func:`mlp`).
        parity: 0 conditions on the even coordinates, 1 on the odd ones.
        net: a conditioner of one's own, ``(B, |A|) -> (B, outputs_per_coordinate·|B|)``
            (``hidden`` and ``layers`` are then unused).
    """

    def __init__(
        self,
        dim: int,
        outputs_per_coordinate: int,
        hidden: int,
        layers: int,
        parity: int,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        self.dim = positive_int(dim, "dim", where, minimum=2)
        self.parity = zero_or_one(parity, "parity", where)
        mask = _split_mask(self.dim, self.parity, "alternating")
        # Derived from (dim, parity), so kept out of the state dict; buffers follow .to(device).
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("index_A", mask.nonzero().squeeze(1), persistent=False)
        self.register_buffer("index_B", (~mask).nonzero().squeeze(1), persistent=False)
        hidden = positive_int(hidden, "hidden", where)
        layers = positive_int(layers, "layers", where)
        outputs = outputs_per_coordinate * len(self.index_B)
        self.net = _conditioner_net(
            net, lambda: mlp(len(self.index_A), outputs, hidden, layers), where
        )

    def _check(self, y: object, method: str, name: str) -> Tensor:
        return validate_batch(y, (self.dim,), where=f"{type(self).__name__}.{method}", name=name)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, parity={self.parity}"


class AdditiveCoupling(_AffineLaw, _VectorCoupling):
    r"""NICE's additive coupling, :math:`z_A = x_A,\ z_B = x_B + t(x_A)`: volume preserving.

    The affine law with :math:`s = 0`: the log-determinant is exactly zero in both directions.
    The mask alternates (even coordinates condition, odd ones move; ``parity=1`` swaps them),
    as in NICE.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        hidden: width of the conditioner's hidden layers.
        layers: number of hidden layers of the conditioner.
        parity: 0 or 1, which half of the alternating mask is transformed.
        net: a conditioner of one's own, ``(B, |A|) -> (B, |B|)`` (default: :func:`mlp`).

    Attributes:
        mask: ``(D,)`` bool, ``True`` on the conditioning coordinates ``A``.
        net: the conditioner :math:`t`, ``(B, |A|) -> (B, |B|)``, output layer zero at start.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        parity: int = 0,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__(dim, 1, hidden, layers, parity, net)

    def conditioner(self, y_A: Tensor) -> tuple[Tensor, Tensor]:
        """``y_A (B, |A|) -> (s, t)``, each ``(B, |B|)``, with ``s = 0``."""
        (t,) = self._net(y_A, 1, (len(self.index_B),))
        return torch.zeros_like(t), t


class AffineCoupling(_AffineLaw, _VectorCoupling):
    r"""RealNVP's affine coupling, :math:`z_A = x_A,\ z_B = x_B \odot e^{s(x_A)} + t(x_A)`.

    Mask: alternating, as in NICE (even coordinates condition when ``parity=0``, odd ones when
    ``parity=1``). Without permutations between layers any split is a fixed relabelling of
    another; the alternating one keeps each moved coordinate next to a conditioning one, the
    1D analogue of RealNVP's checkerboard, and in 2D it is the same as splitting in halves.

    Stable scale: the conditioner returns ``(h, t)`` and the log-scale is
    :math:`s = a \odot \tanh(h)` with a learnable per-coordinate bound :math:`a` (the learned
    tanh rescaling of common RealNVP implementations), starting at 1. An unbounded
    :math:`s = h` lets one large conditioner output overflow ``exp`` (or its inverse underflow)
    early in training; with the bound each layer stretches or shrinks by at most
    :math:`e^{|a|}`, in both directions alike. Glow's :math:`\sigma(h + 2)` is also bounded
    but only contracts in the normalizing direction (it relies on ActNorm to expand), which
    suits a 2D toy flow without ActNorm less well.

    Initialization: the default conditioner's output layer is zero, so ``h = t = 0`` and a
    fresh layer is exactly the identity with log-determinant 0.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        hidden: width of the conditioner's hidden layers.
        layers: number of hidden layers of the conditioner.
        parity: 0 or 1, which half of the alternating mask is transformed.
        net: a conditioner of one's own, ``(B, |A|) -> (B, 2|B|)`` giving ``(h, t)`` (default:
            :func:`mlp`).

    Attributes:
        mask: ``(D,)`` bool, ``True`` on the conditioning coordinates ``A``.
        net: the conditioner, ``(B, |A|) -> (B, 2|B|)`` giving ``(h, t)``.
        scale: the bound :math:`a`, ``(|B|,)``.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        parity: int = 0,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__(dim, 2, hidden, layers, parity, net)
        self.scale = nn.Parameter(torch.ones(len(self.index_B)))

    def conditioner(self, y_A: Tensor) -> tuple[Tensor, Tensor]:
        """``y_A (B, |A|) -> (s, t)``, each ``(B, |B|)``, with ``s = a ⊙ tanh(h)``."""
        h, t = self._net(y_A, 2, (len(self.index_B),))
        return self.scale * torch.tanh(h), t


class AffineCoupling2d(_AffineLaw):
    r"""RealNVP's affine coupling for images ``(B, C, H, W)`` with a convolutional conditioner.

    Masks (Isachenko, AI Masters 2024, "image partitioning"):

    * ``"checkerboard"``: pixel ``(i, j)`` conditions when ``i + j + parity`` is even, in every
      channel. The conditioner reads :math:`b \odot x` (the moved pixels set to zero) and its
      outputs are multiplied by :math:`1 - b`, so :math:`s = t = 0` on ``A``: those pixels
      pass through exactly and the log-determinant sums :math:`s` over ``B`` only. Any ``H``
      and ``W`` work, odd or not; the mask is built for the input's size at each call.
    * ``"channel"``: the first ``C // 2`` channels condition the other ones (``parity=1``
      swaps the two groups), the split RealNVP uses after a squeeze and Glow uses throughout.
      The conditioner maps the ``A`` channels to ``(h, t)`` for the ``B`` channels only: the
      split of the vector couplings, along the channels.
    Needs ``C ≥ 2`` for the channel mask.

    Scale: :math:`s = a_c \tanh(h)` with a learnable bound :math:`a_c` per channel, starting
    at 1 (see :class:`AffineCoupling` for why). The default conditioner's output convolution
    starts at zero, so a fresh layer is the identity.

    Args:
        channels: number of channels ``C``.
        hidden: channels of the conditioner's hidden 3x3 convolutions.
        layers: number of hidden convolutions.
        mask: ``"checkerboard"`` or ``"channel"``.
        parity: 0 or 1; flips the mask.
        net: a conditioner of one's own, keeping ``H`` and ``W``: ``(B, C, H, W) ->
            (B, 2C, H, W)`` for the checkerboard, ``(B, |A|, H, W) -> (B, 2|B|, H, W)`` for the
            channel mask (default: :func:`conv_net`).

    Attributes:
        net: the conditioner.
        scale: the bound :math:`a`, ``(C, 1, 1)`` for the checkerboard and ``(|B|, 1, 1)``
            for the channel mask.
    """

    def __init__(
        self,
        channels: int,
        *,
        hidden: int = 32,
        layers: int = 2,
        mask: str = "checkerboard",
        parity: int = 0,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        self.channels = positive_int(channels, "channels", where)
        self.parity = zero_or_one(parity, "parity", where)
        choice(mask, MASKS, "mask", where)
        if mask == "channel" and self.channels < 2:
            raise ValueError(
                f"{where}: mask='channel' needs channels ≥ 2 (one group conditions, the other "
                f"is transformed), got channels={self.channels}; use mask='checkerboard'"
            )
        self.mask_type = mask
        hidden = positive_int(hidden, "hidden", where)
        layers = positive_int(layers, "layers", where)
        in_a = _split_mask(self.channels, self.parity, "half")
        if mask == "checkerboard":  # every channel conditions (on its A pixels) and moves
            in_a = torch.zeros(self.channels, dtype=torch.bool)
        self.register_buffer("index_A", in_a.nonzero().squeeze(1), persistent=False)
        self.register_buffer("index_B", (~in_a).nonzero().squeeze(1), persistent=False)
        reads = len(self.index_A) if mask == "channel" else self.channels
        moved = len(self.index_B)
        self.net = _conditioner_net(net, lambda: conv_net(reads, 2 * moved, hidden, layers), where)
        self.scale = nn.Parameter(torch.ones(moved, 1, 1))

    def mask(self, height: int, width: int) -> Tensor:
        """Boolean mask ``(C, H, W)``, ``True`` on the conditioning elements ``A``."""
        if self.mask_type == "channel":
            in_a = _split_mask(self.channels, self.parity, "half")
            return in_a[:, None, None].expand(self.channels, height, width)
        rows, columns = torch.arange(height)[:, None], torch.arange(width)[None, :]
        in_a = (rows + columns + self.parity) % 2 == 0
        return in_a.expand(self.channels, height, width)

    def _check(self, y: object, method: str, name: str) -> Tensor:
        where = f"{type(self).__name__}.{method}"
        hint = (
            "; for vectors (B, D) use AffineCoupling"
            if isinstance(y, Tensor) and y.dim() == 2
            else ""
        )
        return validate_images(y, self.channels, where=where, name=name, hint=hint)

    def _moved(self, y: Tensor) -> Tensor:
        """``1 - b``: ``(C, H, W)`` in ``y``'s dtype, 1 on the moved pixels (checkerboard)."""
        b = self.mask(y.shape[2], y.shape[3])
        return (~b).to(device=y.device, dtype=y.dtype)

    def _parts(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Channel: the ``A`` and ``B`` channels. Checkerboard: ``(b ⊙ y, y)``, every element
        moves, by ``s = t = 0`` on ``A``."""
        if self.mask_type == "channel":
            return super()._parts(y)
        return (1 - self._moved(y)) * y, y

    def conditioner(self, y_A: Tensor) -> tuple[Tensor, Tensor]:
        """``(s, t)`` for the conditioning part ``y_A`` that :meth:`_parts` gives.

        Checkerboard: both ``(B, C, H, W)``, computed from ``b ⊙ y`` and zeroed on ``A``.
        Channel: both ``(B, |B|, H, W)``, computed from the ``A`` channels.
        """
        h, t = self._net(y_A, 2, (len(self.index_B), *y_A.shape[2:]))
        s = self.scale * torch.tanh(h)
        if self.mask_type == "channel":
            return s, t
        moved = self._moved(y_A)
        return moved * s, moved * t

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mask={self.mask_type!r}, parity={self.parity}"
