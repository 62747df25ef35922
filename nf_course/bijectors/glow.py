"""Glow: activation normalization (:class:`ActNorm`), squeeze (:class:`Squeeze`), the flow step
(:class:`GlowStep`) and the multi-scale architecture with factor-out (:class:`Glow`).

Chapter: ``book/09_glow.md`` (Kingma and Dhariwal 2018; Dinh et al. 2017 for the multi-scale
architecture); the 1x1 convolution is in :mod:`nf_course.bijectors.linear`; tests:
``tests/test_glow.py``; assignment: ``solutions/06_glow``; benchmarks: ``benchmarks/digits_bpd.py``,
``benchmarks/kl_2d.py``. The reference code of Yang and Ryu (2020, §2.4.3) gives the 1x1
convolution's log-det the opposite sign and sums the coupling's over the batch; here every
log-det is per sample, with the sign of the change of variables.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nf_course.bijectors.coupling import AffineCoupling2d
from nf_course.bijectors.linear import InvConv1x1
from nf_course.common import boolean, positive_int, validate_batch, validate_images
from nf_course.core import Bijector, Compose

__all__ = ["ActNorm", "Glow", "GlowStep", "Squeeze"]


class ActNorm(Bijector):
    r"""Activation normalization: ``z = (x - μ) · exp(-log σ)`` per channel (Glow).

    Works on images ``(B, C, H, W)`` and on vectors ``(B, C)``. The forward log-det is
    ``-H·W·Σ_c log σ_c`` for images and ``-Σ_c log σ_c`` for vectors.

    Data-dependent initialization: the first call of ``forward`` sets ``μ`` to the per-channel
    mean of its batch and ``log σ`` to the log of the per-channel standard deviation (plus
    ``eps``), so that this first output has zero mean and unit variance in every channel, and
    sets the buffer ``initialized``. Later calls never re-initialize; since ``initialized`` is
    saved in the ``state_dict``, neither does a model loaded from one. The initialization
    writes the parameters in place, outside autograd.

    Calling ``inverse`` before any ``forward`` raises a ``RuntimeError``: the generative
    direction has no data to initialize from, and a silent identity map would hide that the
    model was never fitted. Run ``forward`` (e.g. ``flow.log_prob(x)``) on a data batch first.

    Args:
        channels: number of channels ``C``.
        eps: added to the standard deviation at initialization, so that a constant channel
            gives a finite scale.

    Attributes:
        loc: ``μ``, ``(C,)`` parameter.
        log_scale: ``log σ``, ``(C,)`` parameter.
        initialized: ``()`` bool buffer, ``True`` once the data-dependent initialization ran.
    """

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = positive_int(channels, "channels", "ActNorm")
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _check(self, x: object, method: str, name: str) -> Tensor:
        """Validate a batch ``(B, C)`` or ``(B, C, H, W)`` and return it."""
        where = f"ActNorm.{method}"
        x = validate_batch(x, None, where=where, name=name)
        if x.dim() not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(
                f"{where}: {name} must be a batch of images (B, {self.channels}, H, W) or of "
                f"vectors (B, {self.channels}), got shape {tuple(x.shape)}"
            )
        return x

    def _broadcast(self, parameter: Tensor, x: Tensor) -> Tensor:
        """A ``(C,)`` parameter reshaped to ``(C,)`` or ``(C, 1, 1)`` to broadcast against ``x``."""
        return parameter.reshape(self.channels, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        """Set ``μ`` and ``log σ`` from the per-channel statistics of the batch ``x``."""
        per_channel = x.detach().transpose(0, 1).reshape(self.channels, -1)
        self.loc.copy_(per_channel.mean(dim=1))
        self.log_scale.copy_(torch.log(per_channel.std(dim=1, unbiased=False) + self.eps))
        self.initialized.fill_(True)

    def _log_det(self, x: Tensor) -> Tensor:
        """``-P·Σ_c log σ_c`` for every sample, ``(B,)``, with ``P = H·W`` (1 for vectors)."""
        pixels = x[0, 0].numel()
        return (-pixels * self.log_scale.sum()).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C[, H, W]) -> (z = (x - μ)·exp(-log σ), -H·W·Σ log σ (B,))``."""
        x = self._check(x, "forward", "x")
        if not self.initialized:
            self._initialize(x)
        mu, log_sigma = self._broadcast(self.loc, x), self._broadcast(self.log_scale, x)
        return (x - mu) * torch.exp(-log_sigma), self._log_det(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, C[, H, W]) -> (x = z·exp(log σ) + μ, H·W·Σ log σ (B,))``."""
        z = self._check(z, "inverse", "z")
        if not self.initialized:
            raise RuntimeError(
                "ActNorm.inverse: the layer is not initialized yet; ActNorm sets its scale and "
                "location from the first batch of data passed to forward, so run forward (e.g. "
                "flow.log_prob(x)) on a data batch before sampling"
            )
        mu, log_sigma = self._broadcast(self.loc, z), self._broadcast(self.log_scale, z)
        return z * torch.exp(log_sigma) + mu, -self._log_det(z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, initialized={bool(self.initialized)}"


class Squeeze(Bijector):
    """Space-to-depth: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``, a permutation with log-det 0.

    Output channel ``4c + 2a + b`` at pixel ``(i, j)`` is input channel ``c`` at pixel
    ``(2i + a, 2j + b)`` for ``a, b ∈ {0, 1}``. ``H`` and ``W`` must be even.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, H, W) -> (z (B, 4C, H/2, W/2), zeros (B,))``."""
        x = validate_batch(x, None, where="Squeeze.forward")
        if x.dim() != 4:
            raise ValueError(
                f"Squeeze.forward: x must be a batch of images (B, C, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        batch, channels, height, width = x.shape
        if height % 2 or width % 2:
            raise ValueError(
                f"Squeeze.forward: the height and width of x must be even to group its pixels "
                f"in 2x2 blocks, got H={height}, W={width}; crop or pad the images"
            )
        blocks = x.reshape(batch, channels, height // 2, 2, width // 2, 2)
        z = blocks.permute(0, 1, 3, 5, 2, 4).reshape(batch, 4 * channels, height // 2, width // 2)
        return z, x.new_zeros(batch)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, 4C, H/2, W/2) -> (x (B, C, H, W), zeros (B,))``."""
        z = validate_batch(z, None, where="Squeeze.inverse", name="z")
        if z.dim() != 4 or z.shape[1] % 4:
            raise ValueError(
                f"Squeeze.inverse: z must be a batch of images (B, 4C, H, W) with a number of "
                f"channels divisible by 4, got shape {tuple(z.shape)}"
            )
        batch, channels, height, width = z.shape
        blocks = z.reshape(batch, channels // 4, 2, 2, height, width)
        x = blocks.permute(0, 1, 4, 2, 5, 3).reshape(batch, channels // 4, 2 * height, 2 * width)
        return x, z.new_zeros(batch)


class GlowStep(Compose):
    """One step of Glow: ActNorm → invertible 1x1 convolution → channel-split affine coupling.

    A :class:`~nf_course.core.Compose` of the three layers, on images ``(B, C, H, W)``,
    ``C ≥ 2`` (apply :class:`Squeeze` first to a one-channel image). ``forward`` sums the
    three log-dets; ``inverse`` undoes the layers in reverse order.

    Args:
        channels: number of channels ``C ≥ 2``.
        hidden: channels of the coupling conditioner's hidden 3x3 convolutions.
        layers: number of hidden convolutions of the conditioner.
        lu: LU-parametrized 1x1 convolution (``True``) or a plain matrix (``False``).
        seed: seed of the 1x1 convolution's initial random orthogonal matrix.

    Attributes:
        actnorm, conv, coupling: the three layers (also ``self[0]``, ``self[1]``, ``self[2]``).
    """

    def __init__(
        self,
        channels: int,
        *,
        hidden: int = 32,
        layers: int = 1,
        lu: bool = True,
        seed: int = 0,
    ) -> None:
        channels = positive_int(channels, "channels", "GlowStep")
        if channels < 2:
            raise ValueError(
                f"GlowStep: the channel-split coupling needs channels ≥ 2, got {channels}; "
                "apply Squeeze() first, which turns (1, H, W) into (4, H/2, W/2)"
            )
        super().__init__(
            ActNorm(channels),
            InvConv1x1(channels, lu=lu, seed=seed),
            AffineCoupling2d(channels, hidden=hidden, layers=layers, mask="channel"),
        )
        self.channels = channels

    @property
    def actnorm(self) -> ActNorm:
        """The :class:`ActNorm` layer."""
        return self.bijectors[0]

    @property
    def conv(self) -> InvConv1x1:
        """The :class:`~nf_course.bijectors.linear.InvConv1x1` layer."""
        return self.bijectors[1]

    @property
    def coupling(self) -> AffineCoupling2d:
        """The :class:`~nf_course.bijectors.coupling.AffineCoupling2d` layer."""
        return self.bijectors[2]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class Glow(Bijector):
    r"""Glow's multi-scale flow: ``L`` levels of squeeze and ``K`` steps, with factor-out.

    Level ``i`` squeezes its input, applies ``K`` :class:`GlowStep`\ s and, except at the last
    level, factors out the first half of the channels (they go to the latent ``z`` unchanged by
    later levels) and passes the second half on. On ``(C, H, W)`` images, level ``i`` works on
    ``(2^{i+1} C, H/2^i, W/2^i)``, so ``H`` and ``W`` must be divisible by ``2^L``.

    Split prior (``split_prior=True``): Glow's learned prior of a factored-out half,
    ``z_i ~ N(μ(h), σ(h)²)`` given the half ``h`` that goes on, is written as a bijector:
    before the split, a channel :class:`~nf_course.bijectors.coupling.AffineCoupling2d`
    (``parity=1``) maps the first half to ``(z_i - μ(h)) / σ(h)`` given the second, so the
    standard normal base of the whole flow gives ``z_i`` that conditional Gaussian. Its output
    convolution starts at zero, so a fresh split prior is the identity (the standard normal
    prior of ``split_prior=False``).

    Layout of ``z``: the same shape as ``x``, ``(B, C, H, W)``, so that
    ``Flow(Glow(C), StandardNormal((C, H, W)))`` works and ``inverse`` can read the image size
    from ``z``. The spatial arrangement of ``z`` has no meaning: ``z.reshape(B, -1)`` is the
    concatenation ``[z_1, z_2, …, z_L]`` of the factored-out parts, each flattened in its own
    ``(channels, height, width)`` order (:meth:`latent_shapes` gives their shapes).

    Args:
        channels: number of channels ``C`` of the images.
        levels: number of levels ``L``.
        steps_per_level: number of flow steps ``K`` per level.
        hidden: channels of the couplings' hidden 3x3 convolutions.
        layers: hidden convolutions per coupling conditioner.
        lu: LU-parametrized 1x1 convolutions (``True``) or plain matrices (``False``).
        split_prior: end every level but the last with the learned prior of its factored-out
            half (above).

    Attributes:
        levels: ``nn.ModuleList`` of ``L`` :class:`~nf_course.core.Compose`, each
            ``Squeeze()`` followed by ``K`` :class:`GlowStep` (and, with ``split_prior``, the
            split prior's coupling at every level but the last).
    """

    def __init__(
        self,
        channels: int,
        *,
        levels: int = 2,
        steps_per_level: int = 4,
        hidden: int = 32,
        layers: int = 1,
        lu: bool = True,
        split_prior: bool = False,
    ) -> None:
        super().__init__()
        self.channels = positive_int(channels, "channels", "Glow")
        positive_int(levels, "levels", "Glow")
        positive_int(steps_per_level, "steps_per_level", "Glow")
        split_prior = boolean(split_prior, "split_prior", "Glow")
        modules = []
        width = channels
        for level in range(levels):
            width *= 4
            steps: list[nn.Module] = [
                GlowStep(width, hidden=hidden, layers=layers, lu=lu, seed=level * 1000 + k)
                for k in range(steps_per_level)
            ]
            if split_prior and level < levels - 1:
                steps.append(
                    AffineCoupling2d(width, hidden=hidden, layers=layers, mask="channel", parity=1)
                )
            modules.append(Compose(Squeeze(), *steps))
            width //= 2
        self.levels = nn.ModuleList(modules)
        self.steps_per_level = steps_per_level
        self.split_prior = split_prior

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """Shapes ``(channels, height, width)`` of ``z_1, …, z_L`` for ``(C, H, W)`` images."""
        shapes = []
        channels = self.channels
        for level in range(len(self.levels)):
            channels, height, width = 4 * channels, height // 2, width // 2
            if level < len(self.levels) - 1:
                channels //= 2
            shapes.append((channels, height, width))
        return shapes

    def _check(self, x: object, method: str, name: str) -> Tensor:
        where = f"Glow.{method}"
        x = validate_images(x, self.channels, where=where, name=name)
        factor = 2 ** len(self.levels)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(
                f"{where}: with {len(self.levels)} levels (one squeeze each) H and W must be "
                f"divisible by {factor}, got H={x.shape[2]}, W={x.shape[3]}; use fewer levels "
                "or pad the images"
            )
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, H, W) -> (z (B, C, H, W), log|det ∂z/∂x| (B,))``, ``z`` laid out as above."""
        x = self._check(x, "forward", "x")
        h, total, parts = x, x.new_zeros(x.shape[0]), []
        for index, level in enumerate(self.levels):
            h, log_det = level(h)
            total = total + log_det
            if index < len(self.levels) - 1:
                z_i, h = h.chunk(2, dim=1)
                parts.append(z_i.flatten(1))
        parts.append(h.flatten(1))
        return torch.cat(parts, dim=1).reshape(x.shape), total

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, C, H, W) -> (x (B, C, H, W), log|det ∂x/∂z| (B,))``, undoing ``forward``."""
        z = self._check(z, "inverse", "z")
        shapes = self.latent_shapes(z.shape[2], z.shape[3])
        sizes = [c * h * w for c, h, w in shapes]
        parts = [
            part.reshape(z.shape[0], *shape)
            for part, shape in zip(z.flatten(1).split(sizes, dim=1), shapes, strict=True)
        ]
        h, total = parts[-1], z.new_zeros(z.shape[0])
        for index in reversed(range(len(self.levels))):
            if index < len(self.levels) - 1:
                h = torch.cat([parts[index], h], dim=1)
            h, log_det = self.levels[index].inverse(h)
            total = total + log_det
        return h, total

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, levels={len(self.levels)}, "
            f"steps_per_level={self.steps_per_level}"
            + (", split_prior=True" if self.split_prior else "")
        )
