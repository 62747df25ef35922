"""Autoregressive flows: the masked network :class:`MADE` (built from :class:`MaskedLinear`) and
the Gaussian autoregressive layers :class:`MAF` and :class:`IAF`.

Chapter: ``book/07_autoregressive_flows.md`` (Germain et al. 2015, MADE; Papamakarios et al.
2017, MAF; Kingma et al. 2016, IAF); tests: ``tests/test_autoregressive.py``; assignment:
``solutions/05_autoregressive``; benchmarks: ``benchmarks/ar_costs.py``, ``benchmarks/kl_2d.py``,
``benchmarks/kl_2d_peers.py``, ``benchmarks/layer_ablation.py``, ``benchmarks/short_fits.py``,
``benchmarks/peer_step.py``. Yang and Ryu (2020) write the layer from noise to data with the
conditioner on the noise, ``x = t + s ⊙ z``: that is ``IAF.inverse`` here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nf_course.common import positive_int, validate_batch
from nf_course.core import Bijector

__all__ = ["IAF", "MADE", "MAF", "ORDERS", "MaskedLinear"]

#: The named orderings of :class:`MADE`; an explicit permutation is accepted as well.
ORDERS = ("natural", "reversed", "random")


def _widths(hidden: object, where: str) -> tuple[int, ...]:
    """Return the hidden widths as a tuple of positive ints, else raise a clear error."""
    if isinstance(hidden, int | str) or not isinstance(hidden, Sequence):
        raise TypeError(
            f"{where}: hidden must be a sequence of widths such as (64, 64), got {hidden!r}"
        )
    return tuple(positive_int(width, "each hidden width", where) for width in hidden)


def _check_order(order: object, dim: int, where: str) -> None:
    """Raise a clear error unless ``order`` is a name of :data:`ORDERS` or a permutation."""
    if isinstance(order, str):
        if order not in ORDERS:
            raise ValueError(
                f"{where}: unknown order {order!r}; choose one of {', '.join(map(repr, ORDERS))} "
                f"or pass a permutation of 0..{dim - 1}"
            )
        return
    values = list(order) if isinstance(order, Sequence) else None
    if (
        values is None
        or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
        or sorted(values) != list(range(dim))
    ):
        raise ValueError(
            f"{where}: order must be one of {', '.join(map(repr, ORDERS))} or a permutation "
            f"of 0..{dim - 1}, got {order!r}"
        )


def _ordering(order: str | Sequence[int], dim: int, generator: torch.Generator) -> Tensor:
    """The coordinates from first to last: a permutation ``(dim,)`` of ``range(dim)``."""
    if order == "natural":
        return torch.arange(dim)
    if order == "reversed":
        return torch.arange(dim).flip(0)
    if order == "random":
        return torch.randperm(dim, generator=generator)
    return torch.tensor(list(order), dtype=torch.long)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary mask: ``y = x (W ⊙ M)ᵀ + b``.

    ``(B, in_features) -> (B, out_features)``. Masked weights still exist as parameters (and
    optimizers may change them) but never reach the output, so no gradient flows through them.

    Args:
        mask: ``(out_features, in_features)`` bool, ``True`` where a connection is allowed.

    Attributes:
        mask: the mask, a buffer, so it follows ``.to(device)`` and is saved in the state dict
            together with the weights it belongs to.
    """

    def __init__(self, mask: Tensor) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(torch.bool).clone())

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, in_features) -> (B, out_features)``."""
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation: an MLP whose output ``i`` sees ``x_{<i}``.

    ``(B, D) -> (B, outputs_per_dim, D)``: entry ``[:, p, i]`` is the ``p``-th parameter of
    coordinate ``i`` (for :class:`IAF`, ``p = 0`` is :math:`\mu_i` and ``p = 1`` is the raw
    :math:`\alpha_i`; for :class:`MAF`, ``p = 0`` is :math:`\mu_i e^{-\alpha_i}`), and depends
    only on the inputs ``j`` that come before ``i`` in the ordering.

    Degrees (Germain et al.). Input ``j`` gets degree :math:`m(j) \in \{1, \dots, D\}`, its
    position in the ordering plus one. Each hidden unit ``k`` gets a degree
    :math:`m(k) \in \{1, \dots, \max(D - 1, 1)\}`: for the ``"natural"`` and ``"reversed"``
    orders and for an explicit permutation they cycle, :math:`m(k) = 1 + (k \bmod (D - 1))`, so
    every degree is present as soon as a layer has at least :math:`D - 1` units; for
    ``"random"`` they are drawn uniformly from the same generator (seeded by ``seed``) as the
    ordering, as in the paper. A hidden unit may connect to a unit of the previous layer of
    degree :math:`\le m(k)`; output ``i`` to units of degree :math:`< m(i)` (strictly). By
    induction a hidden unit of degree ``d`` depends only on inputs of degree :math:`\le d`, so
    output ``i`` depends only on inputs of degree :math:`< m(i)`: never on :math:`x_i` itself or
    a later coordinate. The first coordinate's outputs depend on no input: they are the biases.

    Initialization: the output layer's weight and bias are zero, so every output starts at 0
    (and a fresh :class:`MAF` is the identity).

    Args:
        dim: dimension ``D ≥ 1`` of the input.
        hidden: widths of the hidden layers, any number of them (``()`` is a masked linear map).
        outputs_per_dim: number of outputs per coordinate.
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation of ``range(D)``
            listing the coordinates from first to last.
        seed: seed of the random ordering and degrees (only used by ``"random"``).

    Attributes:
        order: ``(D,)`` long buffer, the coordinates from first to last.
        degrees: list of ``(width,)`` long tensors, the degrees of the inputs and of each
            hidden layer.
        layers: the :class:`MaskedLinear` layers, the last one being the output layer.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: Sequence[int] = (64, 64),
        outputs_per_dim: int = 2,
        order: str | Sequence[int] = "natural",
        seed: int = 0,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        self.dim = positive_int(dim, "dim", where)
        self.outputs_per_dim = positive_int(outputs_per_dim, "outputs_per_dim", where)
        self.hidden = _widths(hidden, where)
        _check_order(order, self.dim, where)
        generator = torch.Generator().manual_seed(seed)
        self.order_name = order if isinstance(order, str) else "custom"
        order_tensor = _ordering(order, self.dim, generator)
        self.register_buffer("order", order_tensor)

        input_degrees = torch.empty(self.dim, dtype=torch.long)
        input_degrees[order_tensor] = torch.arange(1, self.dim + 1)
        top = max(self.dim - 1, 1)
        self.degrees = [input_degrees]
        for width in self.hidden:
            if order == "random":
                degrees = torch.randint(1, top + 1, (width,), generator=generator)
            else:
                degrees = 1 + torch.arange(width) % top
            self.degrees.append(degrees)
        output_degrees = input_degrees.repeat(self.outputs_per_dim)

        masks = [later[:, None] >= earlier[None, :] for earlier, later in pairwise(self.degrees)]
        masks.append(output_degrees[:, None] > self.degrees[-1][None, :])
        self.layers = nn.ModuleList(MaskedLinear(mask) for mask in masks)
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, D) -> (B, outputs_per_dim, D)``; hidden activations are SiLU (smooth)."""
        x = validate_batch(x, (self.dim,), where=f"{type(self).__name__}.forward")
        h = x
        for layer in self.layers[:-1]:
            h = F.silu(layer(h))
        return self.layers[-1](h).reshape(x.shape[0], self.outputs_per_dim, self.dim)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden={self.hidden}, outputs_per_dim={self.outputs_per_dim}, "
            f"order={self.order_name!r}"
        )


class _GaussianAutoregressive(Bijector):
    r"""Shared part of MAF and IAF: the MADE conditioner and the two ways of applying it.

    Both layers use the elementwise affine map in one of two senses, ``sign = +1``:
    :math:`y \mapsto \mu + e^{\alpha} y`, or ``sign = -1``: :math:`y \mapsto (y - \mu)
    e^{-\alpha}`, whose log-determinant is :math:`\text{sign} \cdot \sum_i \alpha_i`.
    :meth:`_parallel` computes :math:`\mu, \alpha` from its *input* (one MADE pass);
    :meth:`_sequential` computes them from its *output*, which it fills one coordinate per pass
    in the order of the ordering (``D`` passes).

    Bounded log-scale (:class:`IAF`'s; :class:`MAF` bounds it from above only): MADE's raw
    output :math:`h` becomes :math:`\alpha = c \tanh(h / c)` with ``c = alpha_bound``, a soft
    clamp: the identity near 0 (slope 1, so small scales train as if unclamped), never beyond
    :math:`\pm c`, and with a non-zero gradient everywhere. Each coordinate is thus stretched or
    shrunk by at most :math:`e^{c}`. This matters most in the sequential direction, where each
    coordinate feeds the conditioner of the later ones: an unbounded :math:`\alpha` lets one
    overflow (or one huge value) propagate through the remaining ``D - i`` steps. The bound is
    a fixed number, not a parameter, so the guarantee holds during training too.
    """

    #: The bound ``c`` when ``alpha_bound`` is not given.
    default_alpha_bound = 3.0

    def __init__(
        self,
        dim: int,
        *,
        hidden: Sequence[int] = (64, 64),
        order: str | Sequence[int] = "natural",
        seed: int = 0,
        alpha_bound: float | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        # Checked here first so that the errors name the layer the student built, not MADE.
        self.dim = positive_int(dim, "dim", where)
        _check_order(order, self.dim, where)
        self.made = MADE(
            self.dim, hidden=_widths(hidden, where), outputs_per_dim=2, order=order, seed=seed
        )
        if alpha_bound is None:
            alpha_bound = self.default_alpha_bound
        if isinstance(alpha_bound, bool) or not isinstance(alpha_bound, int | float):
            raise TypeError(f"{where}: alpha_bound must be a number, got {alpha_bound!r}")
        if not alpha_bound > 0:
            raise ValueError(f"{where}: alpha_bound must be positive, got {alpha_bound}")
        self.alpha_bound = float(alpha_bound)

    def conditioner(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """One MADE pass: ``y (B, D) -> (shift, alpha)``, each ``(B, D)``, ``|alpha| < c``; the
        shift is MADE's first output (:class:`IAF`'s ``mu``)."""
        mu, h = self.made(y).unbind(dim=1)
        return mu, self.alpha_bound * torch.tanh(h / self.alpha_bound)

    @staticmethod
    def _affine(y: Tensor, mu: Tensor, alpha: Tensor, sign: int) -> Tensor:
        """``mu + exp(alpha) y`` for ``sign = +1``, ``(y - mu) exp(-alpha)`` for ``sign = -1``."""
        return mu + torch.exp(alpha) * y if sign > 0 else (y - mu) * torch.exp(-alpha)

    def _check(self, y: object, method: str, name: str) -> Tensor:
        return validate_batch(y, (self.dim,), where=f"{type(self).__name__}.{method}", name=name)

    def _parallel(self, y: Tensor, sign: int) -> tuple[Tensor, Tensor]:
        """One pass, conditioner on the input: ``y (B, D) -> (out (B, D), log_det (B,))``."""
        mu, alpha = self.conditioner(y)
        return self._affine(y, mu, alpha, sign), sign * alpha.sum(dim=1)

    def _sequential(self, y: Tensor, sign: int) -> tuple[Tensor, Tensor]:
        """``D`` passes, conditioner on the output: ``y (B, D) -> (out (B, D), log_det (B,))``.

        Before pass ``k`` the coordinates at positions ``< k`` of the ordering are final, which
        is all that output position ``k`` depends on; pass ``k`` fills position ``k``. The
        ``alpha`` of the last pass is therefore ``alpha`` at the final output for every
        coordinate, and gives the log-determinant.
        """
        out = torch.zeros_like(y)
        for k in range(self.dim):
            i = self.made.order[k : k + 1]
            mu, alpha = self.conditioner(out)
            out = out.index_copy(1, i, self._affine(y[:, i], mu[:, i], alpha[:, i], sign))
        return out, sign * alpha.sum(dim=1)

    def extra_repr(self) -> str:
        return f"alpha_bound={self.alpha_bound}"


class MAF(_GaussianAutoregressive):
    r"""Masked autoregressive flow: :math:`z_i = (x_i - \mu_i(x_{<i}))\, e^{-\alpha_i(x_{<i})}`.

    ``forward`` (density, :math:`x \to z`) is one :class:`MADE` pass with log-determinant
    :math:`-\sum_i \alpha_i`; ``inverse`` (sampling, :math:`z \to x`) computes
    :math:`x_i = \mu_i(x_{<i}) + e^{\alpha_i(x_{<i})} z_i` coordinate by coordinate in the order
    of the ordering, ``D`` MADE passes, with log-determinant :math:`+\sum_i \alpha_i`.
    Stack layers with different orderings (``"natural"`` and ``"reversed"`` alternately, or
    ``"random"`` with different seeds): one layer's first coordinate is only shifted and scaled
    by constants.

    A fresh layer is the identity (MADE's output layer is zero, so :math:`\mu = \alpha = 0`).

    The shift is learned in units of the scale: MADE outputs :math:`m_i = \mu_i e^{-\alpha_i}`,
    so that ``forward`` is :math:`z_i = x_i e^{-\alpha_i} - m_i`, the learned shift added after
    the scale in the direction the layer is trained in (as in :class:`AffineCoupling` and in
    :class:`IAF`'s one-pass direction). The scale of that direction is a softplus of MADE's
    other output :math:`h`, :math:`e^{-\alpha_i} = \operatorname{softplus}(h_i + b) + e^{-c}`,
    with :math:`b` such that it is 1 at :math:`h = 0` and ``c = alpha_bound``: the log-scale
    stays below :math:`c` (sampling stretches a coordinate by at most :math:`e^{c}`), and the
    density direction's scale grows linearly, not exponentially, in :math:`h`. The family of
    maps is that of any Gaussian autoregressive layer; the parametrization is what training
    sees. Against :class:`IAF`'s soft clamp in the same layer, a stack trained by maximum
    likelihood ends closer to the rings target and level on the other 2D targets, and is less
    sensitive to the learning rate (chapter 7; appendix; ``benchmarks/layer_ablation.py``,
    ``benchmarks/short_fits.py``).

    Args:
        dim: dimension ``D ≥ 1`` of a sample.
        hidden: widths of MADE's hidden layers.
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation of ``range(D)``.
        seed: seed of the ``"random"`` ordering and degrees.
        alpha_bound: the bound :math:`c > 0` above :math:`\alpha`; the density direction
            scales by at least :math:`e^{-c}` (default :attr:`default_alpha_bound`,
            :math:`\log 10^3`: at least :math:`10^{-3}`).

    Attributes:
        made: the conditioner, :class:`MADE` with ``outputs_per_dim=2`` (``[:, 0]`` is
            :math:`m = \mu e^{-\alpha}`, ``[:, 1]`` the raw :math:`h`); each call is one pass
            (count them with a forward hook).
    """

    default_alpha_bound = math.log(1e3)

    def conditioner(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One MADE pass: ``x (B, D) -> (mu, alpha)``, each ``(B, D)``, ``alpha < c``, from
        MADE's outputs ``m, h``: ``exp(-alpha) = softplus(h + b) + exp(-c)`` and
        ``mu = exp(alpha) m``."""
        m, h = self.made(x).unbind(dim=1)
        b = h.new_tensor(math.log(math.expm1(1 - math.exp(-self.alpha_bound))))
        # softplus(h + b) + e^-c, written so that it is exactly 1 at h = 0 in any precision
        scale = 1 + (F.softplus(h + b) - F.softplus(b))
        return m / scale, -torch.log(scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z (B, D), -Σ alpha (B,))`` in one MADE pass."""
        return self._parallel(self._check(x, "forward", "x"), sign=-1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), Σ alpha (B,))`` in ``D`` sequential MADE passes."""
        return self._sequential(self._check(z, "inverse", "z"), sign=+1)


class IAF(_GaussianAutoregressive):
    r"""Inverse autoregressive flow layer: :math:`x_i = \mu_i(z_{<i}) + e^{\alpha_i(z_{<i})} z_i`.

    The mirror image of :class:`MAF`: the conditioner reads the noise :math:`z`. ``inverse``
    (sampling, :math:`z \to x`) is one :class:`MADE` pass with log-determinant
    :math:`+\sum_i \alpha_i(z)`, so samples come with their density at no extra cost;
    ``forward`` (density, :math:`x \to z`) solves
    :math:`z_i = (x_i - \mu_i(z_{<i}))\, e^{-\alpha_i(z_{<i})}` coordinate by coordinate,
    ``D`` passes, with log-determinant :math:`-\sum_i \alpha_i(z)`.

    It is ``Inverse(MAF)`` up to a reparametrization of the conditioner (Isachenko, MIPT 2021:
    :math:`\tilde\sigma = 1/\sigma`, :math:`\tilde\mu = -\mu/\sigma`); writing it in its own
    parameters keeps :math:`\mu, \alpha` the shift and log-scale of the sampling map, as in
    Kingma et al., and makes its errors name ``IAF``. A fresh layer is the identity.

    Args:
        dim: dimension ``D ≥ 1`` of a sample.
        hidden: widths of MADE's hidden layers.
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation of ``range(D)``.
        seed: seed of the ``"random"`` ordering and degrees.
        alpha_bound: the bound :math:`c` of the soft clamp :math:`\alpha = c \tanh(h / c)`
            (default :attr:`default_alpha_bound`, 3).

    Attributes:
        made: the conditioner, as in :class:`MAF`, applied to :math:`z`.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z (B, D), -Σ alpha (B,))`` in ``D`` sequential MADE passes."""
        return self._sequential(self._check(x, "forward", "x"), sign=-1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), Σ alpha (B,))`` in one MADE pass."""
        return self._parallel(self._check(z, "inverse", "z"), sign=+1)
