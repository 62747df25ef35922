"""Coupling layers: NICE's additive coupling and RealNVP's affine coupling, for vectors and
images, with their conditioner networks (:func:`mlp`, :func:`conv_net`).

Chapter: ``book/08_coupling_flows.md`` (Dinh et al. 2015, NICE; Dinh et al. 2017, RealNVP); the
spline coupling is in :mod:`nf_course.bijectors.spline`; tests: ``tests/test_coupling.py``;
assignment: ``solutions/04_coupling``; benchmarks: ``benchmarks/kl_2d.py``,
``benchmarks/peer_step.py``, ``benchmarks/ar_costs.py``. Isachenko (AI Masters, 2024) and Yang
and Ryu (2020) put the scale in the generative direction; here it multiplies in ``forward``, so
their scale is ``exp(-s)``.
"""

from __future__ import annotations

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


class _VectorCoupling(Bijector):
    """Shared part of the vector couplings: the mask, its index buffers, the conditioner.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        outputs_per_coordinate: conditioner outputs per coordinate of ``x_B`` (1 for ``t``,
            2 for ``(s, t)``).
        hidden, layers: width and depth of the conditioner (:func:`mlp`).
        parity: 0 conditions on the even coordinates, 1 on the odd ones.
    """

    def __init__(
        self, dim: int, outputs_per_coordinate: int, hidden: int, layers: int, parity: int
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
        self.net = mlp(
            len(self.index_A),
            outputs_per_coordinate * len(self.index_B),
            positive_int(hidden, "hidden", where),
            positive_int(layers, "layers", where),
        )

    def _split(self, x: Tensor, method: str, name: str) -> tuple[Tensor, Tensor]:
        """Validate ``x (B, D)`` and return ``(x_A, x_B)``, shapes ``(B, |A|)`` and ``(B, |B|)``."""
        x = validate_batch(x, (self.dim,), where=f"{type(self).__name__}.{method}", name=name)
        return x[:, self.index_A], x[:, self.index_B]

    def _merge(self, x: Tensor, y_B: Tensor) -> Tensor:
        """``x`` with its ``B`` coordinates replaced by ``y_B`` (a new tensor): ``(B, D)``."""
        return x.index_copy(1, self.index_B, y_B)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, parity={self.parity}"


class AdditiveCoupling(_VectorCoupling):
    r"""NICE's additive coupling, :math:`z_A = x_A,\ z_B = x_B + t(x_A)`: volume preserving.

    The mask alternates (even coordinates condition, odd ones move; ``parity=1`` swaps them),
    as in NICE. The log-determinant is exactly zero in both directions.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        hidden: width of the conditioner's hidden layers.
        layers: number of hidden layers of the conditioner.
        parity: 0 or 1, which half of the alternating mask is transformed.

    Attributes:
        mask: ``(D,)`` bool, ``True`` on the conditioning coordinates ``A``.
        net: the conditioner :math:`t`, ``(B, |A|) -> (B, |B|)``, output layer zero at start.
    """

    def __init__(self, dim: int, *, hidden: int = 64, layers: int = 2, parity: int = 0) -> None:
        super().__init__(dim, 1, hidden, layers, parity)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z (B, D), zeros (B,))`` with ``z_B = x_B + t(x_A)``."""
        x_A, x_B = self._split(x, "forward", "x")
        t = self.net(x_A)
        return self._merge(x, x_B + t), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), zeros (B,))`` with ``x_B = z_B - t(z_A)``."""
        z_A, z_B = self._split(z, "inverse", "z")
        t = self.net(z_A)
        return self._merge(z, z_B - t), z.new_zeros(z.shape[0])


class AffineCoupling(_VectorCoupling):
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

    Initialization: the conditioner's output layer is zero, so ``h = t = 0`` and a fresh
    layer is exactly the identity with log-determinant 0.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        hidden: width of the conditioner's hidden layers.
        layers: number of hidden layers of the conditioner.
        parity: 0 or 1, which half of the alternating mask is transformed.

    Attributes:
        mask: ``(D,)`` bool, ``True`` on the conditioning coordinates ``A``.
        net: the conditioner, ``(B, |A|) -> (B, 2|B|)`` giving ``(h, t)``.
        scale: the bound :math:`a`, ``(|B|,)``.
    """

    def __init__(self, dim: int, *, hidden: int = 64, layers: int = 2, parity: int = 0) -> None:
        super().__init__(dim, 2, hidden, layers, parity)
        self.scale = nn.Parameter(torch.ones(len(self.index_B)))

    def conditioner(self, y_A: Tensor) -> tuple[Tensor, Tensor]:
        """``y_A (B, |A|) -> (s, t)``, each ``(B, |B|)``, with ``s = a ⊙ tanh(h)``."""
        h, t = self.net(y_A).chunk(2, dim=1)
        return self.scale * torch.tanh(h), t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z (B, D), Σ s (B,))`` with ``z_B = x_B ⊙ exp(s) + t``."""
        x_A, x_B = self._split(x, "forward", "x")
        s, t = self.conditioner(x_A)
        return self._merge(x, x_B * torch.exp(s) + t), s.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), -Σ s (B,))`` with ``x_B = (z_B - t) ⊙ exp(-s)``."""
        z_A, z_B = self._split(z, "inverse", "z")
        s, t = self.conditioner(z_A)
        return self._merge(z, (z_B - t) * torch.exp(-s)), -s.sum(dim=1)


class AffineCoupling2d(Bijector):
    r"""RealNVP's affine coupling for images ``(B, C, H, W)`` with a convolutional conditioner.

    Masks (Isachenko, AI Masters 2024, "image partitioning"):

    * ``"checkerboard"``: pixel ``(i, j)`` conditions when ``i + j + parity`` is even, in every
      channel. The conditioner reads :math:`b \odot x` (the moved pixels set to zero) and its
      outputs are multiplied by :math:`1 - b`, so :math:`s = t = 0` on ``A``: those pixels
      pass through exactly and the log-determinant sums :math:`s` over ``B`` only. Any ``H``
      and ``W`` work, odd or not; the mask is built for the input's size at each call.
    * ``"channel"``: the first ``C // 2`` channels condition the other ones (``parity=1``
      swaps the two groups), the split RealNVP uses after a squeeze and Glow uses throughout.
      The conditioner maps the ``A`` channels to ``(h, t)`` for the ``B`` channels only.
      Needs ``C ≥ 2``.

    Scale: :math:`s = a_c \tanh(h)` with a learnable bound :math:`a_c` per channel, starting
    at 1 (see :class:`AffineCoupling` for why). The output convolution starts at zero, so a
    fresh layer is the identity.

    Args:
        channels: number of channels ``C``.
        hidden: channels of the conditioner's hidden 3x3 convolutions.
        layers: number of hidden convolutions.
        mask: ``"checkerboard"`` or ``"channel"``.
        parity: 0 or 1; flips the mask.

    Attributes:
        net: the conditioner (:func:`conv_net`).
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
        if mask == "channel":
            in_a = _split_mask(self.channels, self.parity, "half")
            self.register_buffer("index_A", in_a.nonzero().squeeze(1), persistent=False)
            self.register_buffer("index_B", (~in_a).nonzero().squeeze(1), persistent=False)
            moved = len(self.index_B)
            self.net = conv_net(len(self.index_A), 2 * moved, hidden, layers)
        else:
            moved = self.channels
            self.net = conv_net(self.channels, 2 * self.channels, hidden, layers)
        self.scale = nn.Parameter(torch.ones(moved, 1, 1))

    def mask(self, height: int, width: int) -> Tensor:
        """Boolean mask ``(C, H, W)``, ``True`` on the conditioning elements ``A``."""
        if self.mask_type == "channel":
            in_a = _split_mask(self.channels, self.parity, "half")
            return in_a[:, None, None].expand(self.channels, height, width)
        rows, columns = torch.arange(height)[:, None], torch.arange(width)[None, :]
        in_a = (rows + columns + self.parity) % 2 == 0
        return in_a.expand(self.channels, height, width)

    def _check(self, x: object, method: str, name: str) -> Tensor:
        where = f"{type(self).__name__}.{method}"
        hint = (
            "; for vectors (B, D) use AffineCoupling"
            if isinstance(x, Tensor) and x.dim() == 2
            else ""
        )
        return validate_images(x, self.channels, where=where, name=name, hint=hint)

    def conditioner(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(s, t)`` for the input ``y (B, C, H, W)``, zero wherever ``y`` is not moved.

        Checkerboard: both ``(B, C, H, W)``, computed from ``b ⊙ y`` and zeroed on ``A``.
        Channel: both ``(B, |B|, H, W)``, computed from the ``A`` channels.
        """
        if self.mask_type == "channel":
            h, t = self.net(y[:, self.index_A]).chunk(2, dim=1)
            return self.scale * torch.tanh(h), t
        b = self.mask(y.shape[2], y.shape[3]).to(device=y.device, dtype=y.dtype)
        h, t = self.net(b * y).chunk(2, dim=1)
        return (1 - b) * self.scale * torch.tanh(h), (1 - b) * t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, H, W) -> (z (B, C, H, W), Σ_B s (B,))``, ``z_B = x_B ⊙ exp(s) + t``."""
        x = self._check(x, "forward", "x")
        s, t = self.conditioner(x)
        log_det = s.sum(dim=(1, 2, 3))
        if self.mask_type == "channel":
            x_B = x[:, self.index_B]
            return x.index_copy(1, self.index_B, x_B * torch.exp(s) + t), log_det
        return x * torch.exp(s) + t, log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, C, H, W) -> (x (B, C, H, W), -Σ_B s (B,))``, ``x_B = (z_B - t) ⊙ exp(-s)``."""
        z = self._check(z, "inverse", "z")
        s, t = self.conditioner(z)
        log_det = -s.sum(dim=(1, 2, 3))
        if self.mask_type == "channel":
            z_B = z[:, self.index_B]
            return z.index_copy(1, self.index_B, (z_B - t) * torch.exp(-s)), log_det
        return (z - t) * torch.exp(-s), log_det

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mask={self.mask_type!r}, parity={self.parity}"
