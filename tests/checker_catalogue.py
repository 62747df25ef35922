"""A catalogue of student bijectors, right and wrong, to prove the checker.

Each *correct* implementation is written in a different style (as students do) and must pass
``check_bijector``. Each *mistake* is a realistic bug, taken from what students actually get
wrong in flow assignments, and must be caught by the named property with a message that says so.
Parameters are perturbed away from the identity so that no bug hides behind a trivial map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import transforms as T

# ----------------------------------------------------------------------------- shared pieces


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vectors(batch: int = 12, dim: int = 4, seed: int = 0) -> Tensor:
    return torch.randn(batch, dim, generator=_generator(seed))


def images(batch: int = 6, channels: int = 2, height: int = 4, width: int = 6) -> Tensor:
    return torch.randn(batch, channels, height, width, generator=_generator(1))


def unit_interval(batch: int = 12, dim: int = 3) -> Tensor:
    return torch.rand(batch, dim, generator=_generator(2)) * 0.9 + 0.05


def mlp(d_in: int, d_out: int, hidden: int = 16, *extra: nn.Module) -> nn.Sequential:
    """A small conditioner network, perturbed so that it is far from zero."""
    net = nn.Sequential(nn.Linear(d_in, hidden), *extra, nn.Tanh(), nn.Linear(hidden, d_out))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=_generator(p.numel())) * 0.5)
    return net


# ----------------------------------------------------------------------------- correct


class ExpAffine(nn.Module):
    """z = x·exp(s) + t, elementwise."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.randn(dim, generator=_generator(3)) * 0.5)
        self.t = nn.Parameter(torch.randn(dim, generator=_generator(4)))

    def forward(self, x):
        return x * self.s.exp() + self.t, self.s.sum().expand(x.shape[0])

    def inverse(self, z):
        return (z - self.t) * torch.exp(-self.s), -self.s.sum() * torch.ones(z.shape[0])


class NegativeScale(nn.Module):
    """z = a·x + b with some a < 0: the log-det needs log|a|."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.linspace(-2.0, 1.5, dim) + 0.1)
        self.b = nn.Parameter(torch.linspace(0.5, -0.5, dim))

    def forward(self, x):
        return self.a * x + self.b, torch.log(torch.abs(self.a)).sum().repeat(len(x))

    def inverse(self, z):
        return (z - self.b) / self.a, -torch.log(torch.abs(self.a)).sum().repeat(len(z))


class Coupling(nn.Module):
    """Affine coupling on the second half given the first; ``scale`` picks the style."""

    def __init__(self, dim: int, scale: str = "exp", conditioner: nn.Module | None = None) -> None:
        super().__init__()
        self.d = dim // 2
        self.scale = scale
        self.net = conditioner or mlp(self.d, 2 * (dim - self.d))

    def _scale(self, x1):
        h, t = self.net(x1).chunk(2, dim=1)
        if self.scale == "sigmoid":  # Glow's choice
            log_s = F.logsigmoid(h + 2.0)
        elif self.scale == "tanh":  # RealNVP-style bounded log-scale
            log_s = 1.5 * torch.tanh(h)
        else:
            log_s = h
        return log_s, t

    def forward(self, x):
        x1, x2 = x[:, : self.d], x[:, self.d :]
        log_s, t = self._scale(x1)
        return torch.cat([x1, x2 * log_s.exp() + t], dim=1), log_s.sum(dim=1)

    def inverse(self, z):
        z1, z2 = z[:, : self.d], z[:, self.d :]
        log_s, t = self._scale(z1)
        return torch.cat([z1, (z2 - t) * torch.exp(-log_s)], dim=1), -log_s.sum(dim=1)


class Float32Only(nn.Module):
    """A linear map that builds float32 constants: it fails in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

    def _matrix(self):
        return torch.tensor(
            [[1.5, 0.2, 0.0], [0.1, 0.8, 0.3], [0.0, -0.4, 1.2]], dtype=torch.float32
        )

    def forward(self, x):
        z = x @ self._matrix().T + self.shift
        return z, torch.linalg.slogdet(self._matrix()).logabsdet.expand(x.shape[0])

    def inverse(self, z):
        x = torch.linalg.solve(self._matrix(), (z - self.shift).T).T
        return x, -torch.linalg.slogdet(self._matrix()).logabsdet.expand(z.shape[0])


class WrappedTorchTransform(nn.Module):
    """A torch.distributions transform (affine then tanh) wrapped to the course contract.

    It maps onto the cube (-1, 1)^D, a subset of the space.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.linspace(-0.3, 0.3, dim))
        self.log_scale = nn.Parameter(torch.linspace(-0.5, 0.2, dim))

    def _transform(self):
        affine = T.AffineTransform(self.loc, self.log_scale.exp(), event_dim=1)
        return T.ComposeTransform([affine, T.IndependentTransform(T.TanhTransform(), 1)])

    def forward(self, x):
        transform = self._transform()
        z = transform(x)
        return z, transform.log_abs_det_jacobian(x, z)

    def inverse(self, z):
        transform = self._transform()
        x = transform.inv(z)
        return x, -transform.log_abs_det_jacobian(x, z)


class Sigmoid(nn.Module):
    """z = σ(x): onto (0, 1)^D; no parameters."""

    def forward(self, x):
        return torch.sigmoid(x), (F.logsigmoid(x) + F.logsigmoid(-x)).sum(-1)

    def inverse(self, z):
        x = torch.log(z) - torch.log1p(-z)
        return x, -(torch.log(z) + torch.log1p(-z)).sum(-1)


class FixedPermutation(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("perm", torch.randperm(dim, generator=_generator(5)))

    def forward(self, x):
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z[:, torch.argsort(self.perm)], z.new_zeros(z.shape[0])


class Conv1x1LU(nn.Module):
    """Invertible 1x1 convolution with W = P L (U + diag(sign·exp(log_s)))."""

    def __init__(self, channels: int, *, lu_stale_cache: bool = False) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=_generator(6)))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign", diag.sign())
        self.lower = nn.Parameter(lower + 0.3 * torch.randn(lower.shape, generator=_generator(7)))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(diag.abs().log() + 0.2)
        self.stale = lu_stale_cache
        if lu_stale_cache:
            self.register_buffer("cached_inverse", torch.linalg.inv(self.weight().detach()))

    def weight(self):
        c = self.log_s.shape[0]
        lower = torch.tril(self.lower, -1) + torch.eye(c, dtype=self.lower.dtype)
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_s.exp())
        return self.p @ lower @ upper

    def forward(self, x):
        pixels = x.shape[2] * x.shape[3]
        z = torch.einsum("ij,bjhw->bihw", self.weight(), x)
        return z, (pixels * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, z):
        pixels = z.shape[2] * z.shape[3]
        w_inv = self.cached_inverse if self.stale else torch.linalg.inv(self.weight())
        return torch.einsum("ij,bjhw->bihw", w_inv, z), (-pixels * self.log_s.sum()).expand(
            z.shape[0]
        )


class ActNorm(nn.Module):
    """Per-channel affine, initialised once from the first batch (Glow)."""

    def __init__(
        self, channels: int, *, reinit_every_call: bool = False, forget_pixels: bool = False
    ) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self.reinit = reinit_every_call
        self.forget_pixels = forget_pixels

    def _initialize(self, x):
        with torch.no_grad():
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            std = x.std(dim=(0, 2, 3), keepdim=True)
            self.loc.copy_(-mean)
            self.log_scale.copy_(-torch.log(std + 1e-6))
            self.initialized.fill_(True)

    def _log_det(self, x):
        pixels = 1 if self.forget_pixels else x.shape[2] * x.shape[3]
        return (pixels * self.log_scale.sum()).expand(x.shape[0])

    def forward(self, x):
        if self.reinit or not self.initialized:
            self._initialize(x)
        return (x + self.loc) * self.log_scale.exp(), self._log_det(x)

    def inverse(self, z):
        return z * torch.exp(-self.log_scale) - self.loc, -self._log_det(z)


class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): a permutation of the elements."""

    def __init__(self, *, wrong_inverse_order: bool = False, drop_channel: bool = False) -> None:
        super().__init__()
        self.wrong = wrong_inverse_order
        self.drop = drop_channel

    def forward(self, x):
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        y = y.reshape(b, 4 * c, h // 2, w // 2)
        if self.drop:
            y = y[:, 1:]
        return y, x.new_zeros(b)

    def inverse(self, z):
        b, c4, h, w = z.shape
        c = c4 // 4
        if self.wrong:
            x = z.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 3, 5, 2)
        else:
            x = z.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, 2 * h, 2 * w), z.new_zeros(b)


def made_masks(dim: int, hidden: int, *, see_self: bool = False) -> tuple[Tensor, Tensor]:
    """MADE masks for degrees 1..D; output unit i may only see inputs < i."""
    in_degrees = torch.arange(1, dim + 1)
    hidden_degrees = torch.arange(hidden) % max(dim - 1, 1) + 1
    mask_in = (hidden_degrees[:, None] >= in_degrees[None, :]).float()
    if see_self:
        mask_out = (in_degrees[:, None] >= hidden_degrees[None, :]).float()
    else:
        mask_out = (in_degrees[:, None] > hidden_degrees[None, :]).float()
    return mask_in, mask_out


class MAF(nn.Module):
    """Gaussian autoregressive layer: z_i = (x_i − μ_i(x_<i))·exp(−α_i(x_<i))."""

    def __init__(
        self,
        dim: int,
        hidden: int = 12,
        *,
        see_self: bool = False,
        inverse_conditions_on_z: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        mask_in, mask_out = made_masks(dim, hidden, see_self=see_self)
        self.register_buffer("mask_in", mask_in)
        self.register_buffer("mask_out", torch.cat([mask_out, mask_out]))
        self.w1 = nn.Parameter(torch.randn(hidden, dim, generator=_generator(8)) * 0.6)
        self.b1 = nn.Parameter(torch.randn(hidden, generator=_generator(9)) * 0.2)
        self.w2 = nn.Parameter(torch.randn(2 * dim, hidden, generator=_generator(10)) * 0.4)
        self.b2 = nn.Parameter(torch.randn(2 * dim, generator=_generator(11)) * 0.2)
        self.wrong_inverse = inverse_conditions_on_z

    def _conditioner(self, x):
        h = torch.tanh(F.linear(x, self.w1 * self.mask_in, self.b1))
        mu, alpha = F.linear(h, self.w2 * self.mask_out, self.b2).chunk(2, dim=1)
        return mu, alpha

    def forward(self, x):
        mu, alpha = self._conditioner(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(dim=1)

    def inverse(self, z):
        x = torch.zeros_like(z)
        for i in range(self.dim):
            mu, alpha = self._conditioner(z if self.wrong_inverse else x)
            x = x.clone()
            x[:, i] = z[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
        mu, alpha = self._conditioner(x)
        return x, alpha.sum(dim=1)


class Planar(nn.Module):
    """f(x) = x + û·tanh(wᵀx + b), with wᵀû ≥ −1 by the û reparametrisation.

    The inverse solves the scalar equation along w by bisection, without gradients.
    """

    def __init__(
        self, dim: int, *, w=None, u=None, norm_bug: bool = False, missing_one: bool = False
    ) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, generator=_generator(12)) if w is None else w)
        self.u = nn.Parameter(torch.randn(dim, generator=_generator(13)) if u is None else u)
        self.b = nn.Parameter(torch.tensor(0.3))
        self.norm_bug = norm_bug
        self.missing_one = missing_one

    def u_hat(self):
        wu = self.w @ self.u
        m = -1 + F.softplus(wu)
        norm = self.w.norm() if self.norm_bug else self.w.square().sum()
        return self.u + (m - wu) * self.w / norm

    def forward(self, x):
        u = self.u_hat()
        a = x @ self.w + self.b
        psi = (1 - torch.tanh(a) ** 2)[:, None] * self.w
        one = 0.0 if self.missing_one else 1.0
        return x + u * torch.tanh(a)[:, None], torch.log(torch.abs(one + psi @ u))

    def _bisect(self, wz, wu):
        """Solve wᵀx = α: α + wᵀû·tanh(α + b) = wᵀz, monotone when wᵀû ≥ −1 (no gradients)."""
        with torch.no_grad():
            low, high = wz - wu.abs() - 1, wz + wu.abs() + 1
            for _ in range(200):
                mid = 0.5 * (low + high)
                above = mid + wu * torch.tanh(mid + self.b) > wz
                high = torch.where(above, mid, high)
                low = torch.where(above, low, mid)
            return 0.5 * (low + high)

    def inverse(self, z):
        with torch.no_grad():
            u = self.u_hat()
            alpha = self._bisect(z @ self.w, self.w @ u)
            x = z - u * torch.tanh(alpha + self.b)[:, None]
        _, log_det = self.forward(x)
        return x, -log_det


class PlainObjectAffine:
    """Not an nn.Module at all: a plain class with the two methods."""

    def __init__(self) -> None:
        self.scale = torch.tensor([2.0, -0.5, 1.25])
        self.shift = torch.tensor([1.0, 0.0, -1.0])

    def forward(self, x):
        return x * self.scale.to(x) + self.shift.to(x), self.scale.abs().log().sum().to(x).expand(
            len(x)
        )

    def inverse(self, z):
        return (z - self.shift.to(z)) / self.scale.to(z), -self.scale.abs().log().sum().to(
            z
        ).expand(len(z))


class LeakyReLU(nn.Module):
    """Piecewise-linear bijection: slope 1 for x ≥ 0, slope a for x < 0."""

    def __init__(self, slope: float = 0.3) -> None:
        super().__init__()
        self.log_slope = nn.Parameter(torch.tensor(math.log(slope)))

    def forward(self, x):
        slope = self.log_slope.exp()
        z = torch.where(x >= 0, x, slope * x)
        return z, ((x < 0).to(x.dtype) * self.log_slope).sum(dim=1)

    def inverse(self, z):
        slope = self.log_slope.exp()
        x = torch.where(z >= 0, z, z / slope)
        return x, -((z < 0).to(z.dtype) * self.log_slope).sum(dim=1)


# ----------------------------------------------------------------------------- mistakes


class SignFlipped(ExpAffine):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, -log_det


class LogDetNotSummed(ExpAffine):
    def forward(self, x):
        return x * self.s.exp() + self.t, self.s.expand_as(x)


class LogDetSummedOverBatch(Coupling):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, log_det.sum()


class LogDetBatchSumBroadcast(Coupling):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, log_det.sum().expand(x.shape[0])


class WrongInverseFormula(ExpAffine):
    def inverse(self, z):
        return z * self.s.exp() + self.t, -self.s.sum().expand(z.shape[0])


class InverseLogDetSameSign(ExpAffine):
    def inverse(self, z):
        x, log_det = super().inverse(z)
        return x, -log_det


class LogOfSignedDet(nn.Module):
    """log(det W) without the absolute value; here det W < 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        w = torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=_generator(14))
        w[0] = -w[0]
        self.weight = nn.Parameter(w)

    def forward(self, x):
        return x @ self.weight.T, torch.log(torch.det(self.weight)).expand(x.shape[0])

    def inverse(self, z):
        x = torch.linalg.solve(self.weight, z.T).T
        return x, -torch.log(torch.det(self.weight)).expand(z.shape[0])


class InPlaceForward(ExpAffine):
    def forward(self, x):
        x.mul_(self.s.exp().detach())
        return x + self.t, self.s.sum().expand(x.shape[0])


class InPlaceInverse(ExpAffine):
    def inverse(self, z):
        z -= self.t.detach()
        return z * torch.exp(-self.s), -self.s.sum().expand(z.shape[0])


class AdditiveCouplingOnes(nn.Module):
    """NICE coupling whose log-det is wrongly one per dimension instead of zero."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.d = dim // 2
        self.net = mlp(self.d, dim - self.d)

    def forward(self, x):
        x1, x2 = x[:, : self.d], x[:, self.d :]
        return torch.cat([x1, x2 + self.net(x1)], 1), torch.ones_like(x).sum(1)

    def inverse(self, z):
        z1, z2 = z[:, : self.d], z[:, self.d :]
        return torch.cat([z1, z2 - self.net(z1)], 1), -torch.ones_like(z).sum(1)


class InverseScalesConditioningHalf(Coupling):
    """In inverse, the scale is (wrongly) applied to the first half as well."""

    def inverse(self, z):
        z1, z2 = z[:, : self.d], z[:, self.d :]
        log_s, t = self._scale(z1)
        x1 = z1 * torch.exp(-log_s[:, : z1.shape[1]])
        return torch.cat([x1, (z2 - t) * torch.exp(-log_s)], dim=1), -log_s.sum(dim=1)


class LogDetOverAllDims(nn.Module):
    """Masked coupling whose log-det sums log s over the masked (unchanged) dimensions too."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mask", (torch.arange(dim) % 2).float())
        self.net = mlp(dim, 2 * dim)

    def forward(self, x):
        log_s, t = self.net(x * self.mask).chunk(2, dim=1)
        z = x * self.mask + (1 - self.mask) * (x * log_s.exp() + t)
        return z, log_s.sum(dim=1)

    def inverse(self, z):
        log_s, t = self.net(z * self.mask).chunk(2, dim=1)
        x = z * self.mask + (1 - self.mask) * (z - t) * torch.exp(-log_s)
        return x, -log_s.sum(dim=1)


class ScaleInsteadOfLogScale(Coupling):
    def forward(self, x):
        x1, x2 = x[:, : self.d], x[:, self.d :]
        log_s, t = self._scale(x1)
        return torch.cat([x1, x2 * log_s.exp() + t], 1), log_s.exp().sum(dim=1)


class StaleInverseCache(Conv1x1LU):
    def __init__(self, channels: int) -> None:
        super().__init__(channels, lu_stale_cache=True)


class ReturnsOnlyZ(ExpAffine):
    def forward(self, x):
        return x * self.s.exp() + self.t


class ForwardShapeBug(ExpAffine):
    def forward(self, x):
        return x @ self.s.exp() + self.t, self.s.sum().expand(x.shape[0])


class InverseNotImplemented(ExpAffine):
    def inverse(self, z):
        raise NotImplementedError("TODO: write the inverse")


class DetachedScale(ExpAffine):
    def forward(self, x):
        s = self.s.detach()
        return x * s.exp() + self.t, s.sum().expand(x.shape[0])

    def inverse(self, z):
        s = self.s.detach()
        return (z - self.t) * torch.exp(-s), -s.sum().expand(z.shape[0])


class LogOfSquaredScale(NegativeScale):
    def forward(self, x):
        return self.a * x + self.b, torch.log(self.a**2).sum().repeat(len(x))


class NoiseInForward(ExpAffine):
    def forward(self, x):
        return super().forward(x + 1e-3 * torch.rand_like(x))


class LogOfSignedScale(NegativeScale):
    def forward(self, x):
        return self.a * x + self.b, torch.log(self.a).sum().repeat(len(x))


class HangingInverse(ExpAffine):
    def inverse(self, z):
        x = z.clone()
        while True:  # waits for a convergence that never comes
            x = x + 0.0


class LogDetWrongOrder(Coupling):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, log_det.flip(0)


class LogDetColumn(ExpAffine):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, log_det[:, None]


class LogDetAsFloat(ExpAffine):
    def forward(self, x):
        return x * self.s.exp() + self.t, self.s.sum().item()


class InverseAppliesForward(Coupling):
    def inverse(self, z):
        x, log_det = super().forward(z)
        return x, -log_det


class InverseIsIdentity(ExpAffine):
    def inverse(self, z):
        return z, -self.s.sum().expand(z.shape[0])


# ----------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    """One catalogue entry: how to build it, its input, and (for mistakes) what catches it."""

    name: str
    make: Callable[[], object]
    x: Callable[[], Tensor]
    catches: tuple[str, ...] = ()
    says: str = ""
    options: dict = field(default_factory=dict)


CORRECT: list[Case] = [
    Case("exp-scale elementwise affine", lambda: ExpAffine(4), vectors),
    Case("negative scales with log|a|", lambda: NegativeScale(4), vectors),
    Case("coupling, exp scale", lambda: Coupling(4), vectors),
    Case("coupling, sigmoid scale (Glow)", lambda: Coupling(5, "sigmoid"), lambda: vectors(dim=5)),
    Case("coupling, tanh-bounded log-scale", lambda: Coupling(6, "tanh"), lambda: vectors(dim=6)),
    Case("float32-only code", Float32Only, lambda: vectors(dim=3)),
    Case(
        "torch.distributions affine+tanh, onto (-1, 1)^D",
        lambda: WrappedTorchTransform(3),
        lambda: vectors(dim=3),
    ),
    Case("sigmoid onto (0, 1)^D", Sigmoid, lambda: vectors(dim=3)),
    Case("fixed permutation", lambda: FixedPermutation(5), lambda: vectors(dim=5)),
    Case("1x1 convolution, LU, non-square image", lambda: Conv1x1LU(3), lambda: images(channels=3)),
    Case("ActNorm with data-dependent init once", lambda: ActNorm(2), images),
    Case("squeeze (shape change)", Squeeze, images),
    Case("MAF with MADE masks, sequential inverse", lambda: MAF(4), vectors),
    Case(
        "planar with û, bisection inverse without gradients",
        lambda: Planar(3),
        lambda: vectors(dim=3),
    ),
    Case("plain Python object, not an nn.Module", PlainObjectAffine, lambda: vectors(dim=3)),
    Case("leaky ReLU, piecewise linear", LeakyReLU, vectors),
]

MISTAKES: list[Case] = [
    Case(
        "log-det sign flipped",
        lambda: SignFlipped(4),
        vectors,
        ("log_det_forward",),
        "sign is flipped",
    ),
    Case(
        "log-det not summed over dimensions",
        lambda: LogDetNotSummed(4),
        vectors,
        ("log_det_shape",),
        "forget to sum over the dimensions",
    ),
    Case(
        "log-det summed over the batch",
        lambda: LogDetSummedOverBatch(4),
        vectors,
        ("log_det_shape",),
        "summed or averaged over the batch",
    ),
    Case(
        "log-det summed over the batch, then broadcast",
        lambda: LogDetBatchSumBroadcast(4),
        vectors,
        ("log_det_forward",),
        "summed over the whole batch",
    ),
    Case(
        "log-det of shape (B, 1)",
        lambda: LogDetColumn(4),
        vectors,
        ("log_det_shape",),
        "reshape it",
    ),
    Case(
        "log-det returned as a Python float",
        lambda: LogDetAsFloat(4),
        vectors,
        ("runs",),
        "must be a torch.Tensor",
    ),
    Case(
        "forward returns z only",
        lambda: ReturnsOnlyZ(4),
        vectors,
        ("runs",),
        "must return a pair (z, log_det)",
    ),
    Case(
        "inverse formula wrong",
        lambda: WrongInverseFormula(4),
        vectors,
        ("round_trip",),
        "inverse(z) equals forward(z)",
    ),
    Case(
        "inverse is the identity",
        lambda: InverseIsIdentity(4),
        vectors,
        ("round_trip",),
        "returned its input unchanged",
    ),
    Case(
        "inverse applies the forward coupling",
        lambda: InverseAppliesForward(4),
        vectors,
        ("round_trip",),
        "only elements [2, 3]",
    ),
    Case(
        "inverse log-det has forward's sign",
        lambda: InverseLogDetSameSign(4),
        vectors,
        ("log_det_inverse", "log_det_sum"),
        "inverse returns the same log-det as forward",
    ),
    Case(
        "1x1 conv log-det missing H·W",
        lambda: Conv1x1LUMissingPixels(3),
        lambda: images(channels=3),
        ("log_det_forward",),
        "H·W = 24 is missing",
    ),
    Case(
        "ActNorm log-det missing H·W",
        lambda: ActNorm(2, forget_pixels=True),
        images,
        ("log_det_forward",),
        "H·W = 24 is missing",
    ),
    Case(
        "ActNorm re-initialised on every call",
        lambda: ActNorm(2, reinit_every_call=True),
        images,
        ("batch_independence",),
        "ActNorm",
    ),
    Case(
        "BatchNorm inside the conditioner",
        lambda: Coupling(4, conditioner=mlp(2, 4, 16, nn.BatchNorm1d(16))),
        vectors,
        ("batch_independence",),
        "BatchNorm",
    ),
    Case(
        "Dropout inside the conditioner",
        lambda: Coupling(4, conditioner=mlp(2, 4, 16, nn.Dropout(0.5))),
        vectors,
        ("determinism",),
        "Dropout",
    ),
    Case(
        "noise added inside forward",
        lambda: NoiseInForward(4),
        vectors,
        ("determinism",),
        "randomness inside the map",
    ),
    Case(
        "MADE mask lets x_i see itself",
        lambda: MAF(4, see_self=True),
        vectors,
        ("log_det_forward", "round_trip"),
        "",
    ),
    Case(
        "MAF inverse conditions on z instead of x",
        lambda: MAF(4, inverse_conditions_on_z=True),
        vectors,
        ("round_trip",),
        "worst sample",
    ),
    Case(
        "log(det W) without the absolute value",
        lambda: LogOfSignedDet(3),
        lambda: vectors(dim=3),
        ("finite",),
        "log of a negative number",
    ),
    Case(
        "log(s) of a negative scale",
        lambda: LogOfSignedScale(4),
        vectors,
        ("finite",),
        "log of a negative number",
    ),
    Case(
        "log s² instead of log|s|",
        lambda: LogOfSquaredScale(4),
        vectors,
        ("log_det_forward",),
        "2 times the true value",
    ),
    Case(
        "planar û with ‖w‖ instead of ‖w‖²",
        lambda: Planar(2, w=torch.tensor([0.5, 0.0]), u=torch.tensor([-8.0, 1.0]), norm_bug=True),
        lambda: vectors(batch=64, dim=2),
        ("round_trip", "round_trip_inverse"),
        "",
    ),
    Case(
        "planar log-det without the 1 +",
        lambda: Planar(3, missing_one=True),
        lambda: vectors(dim=3),
        ("log_det_forward",),
        "",
    ),
    Case(
        "forward modifies its input in place",
        lambda: InPlaceForward(4),
        vectors,
        ("input_unchanged",),
        "forward modified its input tensor in place",
    ),
    Case(
        "inverse modifies its input in place",
        lambda: InPlaceInverse(4),
        vectors,
        ("input_unchanged",),
        "inverse modified its input tensor in place",
    ),
    Case(
        "NICE log-det of ones instead of zeros",
        lambda: AdditiveCouplingOnes(4),
        vectors,
        ("log_det_forward",),
        "off by the same constant 4",
    ),
    Case(
        "inverse scales the conditioning half too",
        lambda: InverseScalesConditioningHalf(4),
        vectors,
        ("round_trip",),
        "only elements",
    ),
    Case(
        "log-det over the masked dimensions too",
        lambda: LogDetOverAllDims(4),
        vectors,
        ("log_det_forward",),
        "",
    ),
    Case(
        "scale instead of log-scale in the log-det",
        lambda: ScaleInsteadOfLogScale(4),
        vectors,
        ("log_det_forward",),
        "",
    ),
    Case(
        "inverse matrix cached in __init__",
        lambda: StaleInverseCache(3),
        lambda: images(channels=3),
        ("parameter_update",),
        "stale cache",
    ),
    Case(
        "forward has a shape bug",
        lambda: ForwardShapeBug(4),
        vectors,
        ("runs",),
        "ForwardShapeBug.forward raised RuntimeError",
    ),
    Case(
        "inverse not implemented",
        lambda: InverseNotImplemented(4),
        vectors,
        ("runs",),
        "InverseNotImplemented.inverse raised NotImplementedError",
    ),
    Case(
        "scale detached from the graph",
        lambda: DetachedScale(4),
        vectors,
        ("gradients",),
        "no gradient reaches s",
    ),
    Case(
        "squeeze whose inverse reorders wrongly",
        lambda: Squeeze(wrong_inverse_order=True),
        images,
        ("round_trip",),
        "",
    ),
    Case(
        "squeeze that drops a channel",
        lambda: Squeeze(drop_channel=True),
        images,
        ("numel",),
        "must keep the number of elements",
    ),
    Case(
        "log-dets returned in the wrong sample order",
        lambda: LogDetWrongOrder(4),
        vectors,
        ("log_det_forward", "batch_independence"),
        "",
    ),
    Case(
        "inverse never returns",
        lambda: HangingInverse(4),
        vectors,
        ("runs",),
        "did not return within 1 s",
        {"timeout": 1.0},
    ),
]


class Conv1x1LUMissingPixels(Conv1x1LU):
    def forward(self, x):
        z, _ = super().forward(x)
        return z, self.log_s.sum().expand(x.shape[0])

    def inverse(self, z):
        x, _ = super().inverse(z)
        return x, -self.log_s.sum().expand(z.shape[0])


# ----------------------------------------------------------------------------- derivatives, caches,
# copies: correct code that keeps tensors or wraps other libraries, and values that are right with
# derivatives that are wrong.


class CachesLastLogDet(ExpAffine):
    """Keeps its last log-det for debugging: a non-leaf tensor that refuses ``copy.deepcopy``."""

    def forward(self, x):
        z, log_det = super().forward(x)
        self.last_log_det = log_det
        return z, log_det


def called_once(module: nn.Module, x: Tensor) -> nn.Module:
    """``module`` after one forward call (so that it holds whatever it caches)."""
    module.forward(x)
    return module


class WeightNormLinear(nn.Module):
    """z = W x + b with W weight-normalized (``torch.nn.utils.parametrizations``)."""

    def __init__(self, dim: int, *, deprecated_hook: bool = False) -> None:
        super().__init__()
        linear = nn.Linear(dim, dim)
        with torch.no_grad():
            linear.weight.copy_(
                torch.eye(dim) + 0.4 * torch.randn(dim, dim, generator=_generator(20))
            )
            linear.bias.copy_(torch.randn(dim, generator=_generator(21)))
        if deprecated_hook:  # the old API: warns (FutureWarning) and keeps W as a non-leaf
            self.linear = nn.utils.weight_norm(linear)
        else:
            self.linear = nn.utils.parametrizations.weight_norm(linear)

    def _weight(self):
        if hasattr(self.linear, "parametrizations"):
            return self.linear.weight
        return (
            self.linear.weight_g
            * self.linear.weight_v
            / self.linear.weight_v.norm(dim=1, keepdim=True)
        )

    def forward(self, x):
        weight = self._weight()
        log_det = torch.linalg.slogdet(weight).logabsdet.expand(x.shape[0])
        return x @ weight.T + self.linear.bias, log_det

    def inverse(self, z):
        weight = self._weight()
        x = torch.linalg.solve(weight, (z - self.linear.bias).T).T
        return x, -torch.linalg.slogdet(weight).logabsdet.expand(z.shape[0])


class WrapsTransform(nn.Module):
    """The course contract around a ``torch.distributions``-style transform ``self.transform``."""

    def forward(self, x):
        z = self.transform(x)
        return z, self.transform.log_abs_det_jacobian(x, z)

    def inverse(self, z):
        x = self.transform.inv(z)
        return x, -self.transform.log_abs_det_jacobian(x, z)


class CachingTorchTransform(WrapsTransform):
    """torch.distributions transforms built once, with their caches on (``cache_size=1``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.linspace(-0.3, 0.3, dim))
        self.scale = nn.Parameter(torch.linspace(0.6, 1.4, dim))
        self.transform = T.ComposeTransform(
            [
                T.AffineTransform(self.loc, self.scale, event_dim=1, cache_size=1),
                T.IndependentTransform(T.TanhTransform(cache_size=1), 1),
            ],
            cache_size=1,
        )


class PyroAffineCoupling(WrapsTransform):
    """pyro's affine coupling layer (a TransformModule that caches), wrapped to the contract."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        from pyro.distributions.transforms import affine_coupling

        torch.manual_seed(0)  # pyro initializes its network from the global generator
        self.transform = affine_coupling(dim, hidden_dims=[16])
        with torch.no_grad():
            for p in self.transform.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=_generator(p.numel())))


class NewtonPlanar(Planar):
    """Planar with a differentiable inverse: bisection without gradients, then one Newton step."""

    def __init__(self, dim: int, *, newton: bool = True) -> None:
        super().__init__(dim)
        self.newton = newton

    def inverse(self, z):
        u = self.u_hat()
        wz, wu = z @ self.w, self.w @ u
        alpha = self._bisect(wz, wu)
        if self.newton:
            tanh = torch.tanh(alpha + self.b)
            alpha = alpha - (alpha + wu * tanh - wz) / (1 + wu * (1 - tanh**2))
        x = z - u * torch.tanh(alpha + self.b)[:, None]
        _, log_det = self.forward(x)
        return x, -log_det


class ClampedScale(nn.Module):
    """z = x·s with s = max(1, |a|), one entry of a exactly at the kink |a| = 1 (as a weight
    right at a spectral-norm bound): autograd gives a one-sided derivative there."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0, 2.0, -1.5]))

    def _scale(self):
        return torch.clamp(self.a.abs(), min=1.0)

    def forward(self, x):
        return x * self._scale(), self._scale().log().sum().expand(x.shape[0])

    def inverse(self, z):
        return z / self._scale(), -self._scale().log().sum().expand(z.shape[0])


class DetachedLogDet(ExpAffine):
    """The log-det computed under ``torch.no_grad``: right values, no gradient."""

    def forward(self, x):
        z, _ = super().forward(x)
        with torch.no_grad():
            log_det = self.s.sum().expand(x.shape[0]).clone()
        return z, log_det


class LogDetThroughItem(ExpAffine):
    """The log-det rebuilt from ``.item()``: right values, no gradient."""

    def forward(self, x):
        z, _ = super().forward(x)
        return z, torch.full((x.shape[0],), self.s.sum().item())


class DetachedShift(Coupling):
    """The coupling's shift detached: right values, wrong derivatives of z."""

    def forward(self, x):
        x1, x2 = x[:, : self.d], x[:, self.d :]
        log_s, t = self._scale(x1)
        return torch.cat([x1, x2 * log_s.exp() + t.detach()], dim=1), log_s.sum(dim=1)


class StaleScaleCache(ExpAffine):
    """exp(s) computed on the first call and kept (a non-leaf tensor: no deepcopy)."""

    def _scale(self):
        if not hasattr(self, "cached_scale"):
            self.cached_scale = self.s.exp()
        return self.cached_scale

    def forward(self, x):
        return x * self._scale() + self.t, self.s.sum().expand(x.shape[0])

    def inverse(self, z):
        return (z - self.t) / self._scale(), -self.s.sum().expand(z.shape[0])


class InPlaceCoupling(Coupling):
    """Writes the transformed half into its input (x[:, d:] = …) and returns it."""

    def forward(self, x):
        log_s, t = self._scale(x[:, : self.d])
        x[:, self.d :] = x[:, self.d :] * log_s.exp() + t
        return x, log_s.sum(dim=1)


class ActNormSquarePixels(ActNorm):
    """ActNorm whose log-det counts W·W pixels instead of H·W."""

    def _log_det(self, x):
        return (x.shape[3] ** 2 * self.log_scale.sum()).expand(x.shape[0])


class SqueezedBatch(ExpAffine):
    """Drops size-1 dimensions with ``.squeeze()``, the batch dimension too when B = 1."""

    def forward(self, x):
        z, log_det = super().forward(x)
        return z.squeeze(), log_det.squeeze()

    def inverse(self, z):
        x, log_det = super().inverse(z)
        return x.squeeze(), log_det.squeeze()


class LyingTensor(Tensor):
    """A tensor subclass whose subtraction always gives zero: comparisons would all pass."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        result = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.sub or func is torch.Tensor.__sub__:
            return torch.zeros_like(result)
        return result


class ReturnsLyingTensor(ExpAffine):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z.as_subclass(LyingTensor), log_det


CORRECT += [
    Case(
        "keeps its last log-det (no deepcopy)",
        lambda: called_once(CachesLastLogDet(4), vectors()),
        vectors,
    ),
    Case("weight norm parametrization", lambda: WeightNormLinear(3), lambda: vectors(dim=3)),
    Case(
        "deprecated weight_norm hook (warns, no deepcopy)",
        lambda: called_once(WeightNormLinear(3, deprecated_hook=True), vectors(dim=3)),
        lambda: vectors(dim=3),
    ),
    Case(
        "torch.distributions transforms with caches (no deepcopy)",
        lambda: called_once(CachingTorchTransform(3), vectors(dim=3)),
        lambda: vectors(dim=3),
    ),
    Case(
        "pyro affine coupling, wrapped (no deepcopy)",
        lambda: called_once(PyroAffineCoupling(4), vectors()),
        vectors,
    ),
    Case("a parameter exactly at a kink (clamp)", ClampedScale, lambda: vectors(dim=3)),
    Case(
        "planar, Newton-finished inverse, required differentiable",
        lambda: NewtonPlanar(3),
        lambda: vectors(dim=3),
        options={"differentiable_inverse": True},
    ),
]

MISTAKES += [
    Case(
        "log-det computed under no_grad",
        lambda: DetachedLogDet(4),
        vectors,
        ("parameter_derivatives",),
        "derivative of its log_det with respect to s",
    ),
    Case(
        "log-det rebuilt from .item()",
        lambda: LogDetThroughItem(4),
        vectors,
        ("parameter_derivatives",),
        "cut from the autograd graph",
    ),
    Case(
        "coupling shift detached",
        lambda: DetachedShift(4),
        vectors,
        ("input_derivatives", "parameter_derivatives"),
        "cut from the autograd graph",
    ),
    Case(
        "inverse without gradients where they are required",
        lambda: Planar(3),
        lambda: vectors(dim=3),
        ("input_derivatives",),
        "the inverse must be differentiable here",
        {"differentiable_inverse": True},
    ),
    Case(
        "root-finding inverse without its Newton step, differentiable required",
        lambda: NewtonPlanar(3, newton=False),
        lambda: vectors(dim=3),
        ("input_derivatives",),
        "differentiable Newton step",
        {"differentiable_inverse": True},
    ),
    Case(
        "scale cached on the first call (no deepcopy)",
        lambda: called_once(StaleScaleCache(4), vectors()),
        vectors,
        ("parameter_update",),
        "stale cache",
    ),
    Case(
        "coupling writes into its input",
        lambda: InPlaceCoupling(4),
        vectors,
        ("input_unchanged",),
        "forward modified its input tensor in place",
    ),
    Case(
        "ActNorm log-det with W·W pixels",
        lambda: ActNormSquarePixels(2),
        images,
        ("log_det_forward",),
        "W/H",
    ),
    Case(
        ".squeeze() drops the batch dimension of a single sample",
        lambda: SqueezedBatch(4),
        vectors,
        ("batch_independence",),
        ".squeeze()",
    ),
    Case(
        "returns a tensor subclass that lies in comparisons",
        lambda: ReturnsLyingTensor(4),
        vectors,
        ("runs",),
        "subclass of torch.Tensor",
    ),
]
