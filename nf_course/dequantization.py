r"""Variational dequantization (Ho et al. 2019, Flow++): a conditional flow :math:`q(u \mid x)`
for the noise that turns integer images into continuous data, and the bound it gives.

Uniform dequantization trains a flow on ``y = x + u`` with ``u ~ U[0, 1)^D``; its expected
log-density bounds the discrete log-likelihood, but the bound is loose wherever the flow's
density is not flat across a bin. With a learned :math:`q(u \mid x)` on :math:`(0, 1)^D`,

.. math:: \log P(x) \ge \mathbb E_{u \sim q(u \mid x)}\,[\log p(x + u) - \log q(u \mid x)],

the evidence lower bound (ELBO), tight when :math:`q(u \mid x) \propto p(x + u)` on the bin.
This module holds :class:`VariationalDequantizer` (the conditional flow),
:func:`dequantized_elbo` (the bound per image) and :class:`DequantizedFlow` (a flow and its
dequantizer trained together by :func:`nf_course.training.fit`).

Chapter: ``book/09_glow.md`` (the digits and their bits/dim); tests:
``tests/test_dequantization.py``; benchmark: ``benchmarks/digits_bpd.py --dequantization
variational``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nf_course.bijectors import AffineCoupling2d, Logit
from nf_course.bijectors.coupling import conv_net
from nf_course.common import positive_int, validate_batch
from nf_course.core import Compose, Flow, StandardNormal
from nf_course.datasets import DIGITS_LEVELS, DIGITS_SHAPE

__all__ = ["DequantizedFlow", "VariationalDequantizer", "dequantized_elbo"]


class _ContextNet(nn.Module):
    """A coupling's conditioner that also reads the image's features.

    ``forward(y_A)`` returns ``net(concat(y_A, context))``; the dequantizer sets ``context``
    ``(B, K, H, W)`` before it runs its couplings and clears it afterwards.
    """

    def __init__(self, channels: int, context_channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = conv_net(channels + context_channels, 2 * channels, hidden, layers)
        self.context: Tensor | None = None

    def forward(self, y_A: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, 2C, H, W)``: the coupling's ``(h, t)`` given ``y_A`` and ``x``."""
        if self.context is None or self.context.shape[0] != y_A.shape[0]:
            raise RuntimeError(
                "VariationalDequantizer: a conditional coupling ran without the features of "
                "its images; call the dequantizer's methods, not its couplings"
            )
        return self.net(torch.cat([y_A, self.context], dim=1))


class VariationalDequantizer(nn.Module):
    r"""The conditional flow :math:`q(u \mid x)` on :math:`u \in (0, 1)^{C \times H \times W}`.

    Generative direction: :math:`\varepsilon \sim \mathcal N(0, I)`, then ``couplings``
    checkerboard affine couplings (:class:`~nf_course.bijectors.AffineCoupling2d`, parities
    alternating) whose conditioners read the pixels that stay and a feature map of ``x``, then
    the sigmoid, :math:`u = \sigma(h)` (the inverse of
    :class:`~nf_course.bijectors.Logit` with ``bins=1, alpha=0``). The features are
    ``x / (levels - 1)`` and ``features`` channels of a small convolutional network of it.
    The log-density is exact (change of variables): :math:`\log q(u \mid x) =
    \log \mathcal N(\varepsilon) - \log|\det \partial u/\partial\varepsilon|`.

    A fresh dequantizer has identity couplings, so :math:`q(u \mid x)` starts as the
    logit-normal :math:`\sigma(\mathcal N(0, I))` for every ``x``.

    In float32, :math:`\sigma(h)` rounds to 0 or 1 for :math:`|h| \gtrsim 17`; the samples
    are then moved to the nearest float inside :math:`(0, 1)` (their ``log_q`` stays that of
    the unrounded value); :func:`dequantized_elbo` keeps ``x + u`` inside the bin likewise.

    Args:
        shape: ``(C, H, W)`` of one image; the digits' ``(1, 8, 8)`` by default.
        levels: number of integer levels; pixels take the values ``0 .. levels - 1``.
        couplings: number of conditional couplings.
        hidden: channels of the hidden 3x3 convolutions (feature net and conditioners).
        features: channels of the feature map of ``x``.
        layers: hidden convolutions per conditioner.

    Attributes:
        bijector: the normalizing direction ``u -> ε`` (logit, then the couplings).
        features: the feature network, ``(B, C, H, W) -> (B, features, H, W)``.
    """

    def __init__(
        self,
        shape: tuple[int, int, int] = DIGITS_SHAPE,
        *,
        levels: int = DIGITS_LEVELS,
        couplings: int = 4,
        hidden: int = 32,
        features: int = 8,
        layers: int = 2,
    ) -> None:
        super().__init__()
        where = "VariationalDequantizer"
        if len(shape) != 3:
            raise ValueError(f"{where}: shape must be (C, H, W), got {shape!r}")
        self.shape = tuple(positive_int(size, "shape", where) for size in shape)
        self.levels = positive_int(levels, "levels", where, minimum=2)
        channels = self.shape[0]
        hidden = positive_int(hidden, "hidden", where)
        features = positive_int(features, "features", where)
        layers = positive_int(layers, "layers", where)
        self.features = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, features, kernel_size=3, padding=1),
        )
        context = channels + features
        self._nets = [
            _ContextNet(channels, context, hidden, layers)
            for _ in range(positive_int(couplings, "couplings", where))
        ]
        steps = [
            AffineCoupling2d(channels, mask="checkerboard", parity=i % 2, net=net)
            for i, net in enumerate(self._nets)
        ]
        self.bijector = Compose(Logit(bins=1, alpha=0), *steps)
        self.base = StandardNormal(self.shape)

    def _check(self, x: object, where: str) -> Tensor:
        """Validate ``x``: a floating batch ``(B, C, H, W)`` of integer levels, our dtype."""
        x = validate_batch(x, self.shape, where=where)
        dtype = next(self.parameters()).dtype
        if x.dtype != dtype:
            raise TypeError(
                f"{where}: x has dtype {x.dtype} but the dequantizer is {dtype}; convert one of "
                f"them (x.to({dtype}) or dequantizer.to({x.dtype}))"
            )
        if not bool(((x == x.round()) & (x >= 0) & (x <= self.levels - 1)).all()):
            raise ValueError(
                f"{where}: x must hold integer levels 0..{self.levels - 1} (the images before "
                f"dequantization), got values in [{x.min().item():g}, {x.max().item():g}]"
            )
        return x

    def _set_context(self, x: Tensor | None) -> None:
        """Give every conditioner the features of ``x`` (or clear them, for ``None``)."""
        context = None
        if x is not None:
            scaled = x / (self.levels - 1)
            context = torch.cat([scaled, self.features(scaled)], dim=1)
        for net in self._nets:
            net.context = context

    def from_noise(self, noise: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map base noise ``ε (B, C, H, W)`` to ``u (B, C, H, W)`` and ``log q(u | x) (B,)``.

        Differentiable in ``noise`` and in the parameters (the reparametrization trick).
        """
        x = self._check(x, "VariationalDequantizer.from_noise")
        noise = validate_batch(noise, self.shape, where="VariationalDequantizer.from_noise")
        if noise.shape[0] != x.shape[0]:
            raise ValueError(
                "VariationalDequantizer.from_noise: noise and x must hold as many images, got "
                f"{noise.shape[0]} and {x.shape[0]}"
            )
        return self._from_noise(noise, x)

    def _from_noise(self, noise: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`from_noise` for checked arguments."""
        self._set_context(x)
        try:
            u, log_det = self.bijector.inverse(noise)
        finally:
            self._set_context(None)
        tiny = torch.finfo(u.dtype).tiny
        u = u.clamp(tiny, 1 - torch.finfo(u.dtype).eps / 2)
        return u, self.base.log_prob(noise) - log_det

    def sample_and_log_prob(
        self, x: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``u ~ q(u | x)`` for each image of ``x (B, C, H, W)``: ``(u (B, C, H, W),
        log_q (B,))``, reparametrized; ``generator`` (or torch's global one) gives the noise."""
        x = self._check(x, "VariationalDequantizer.sample_and_log_prob")
        noise = self.base.sample((x.shape[0],), generator=generator)
        return self._from_noise(noise, x)

    def log_prob(self, u: Tensor, x: Tensor) -> Tensor:
        """``log q(u | x)`` for ``u (B, C, H, W)`` in ``(0, 1)`` and images ``x``: ``(B,)``."""
        x = self._check(x, "VariationalDequantizer.log_prob")
        u = validate_batch(u, self.shape, where="VariationalDequantizer.log_prob", name="u")
        if u.shape[0] != x.shape[0]:
            raise ValueError(
                "VariationalDequantizer.log_prob: u and x must hold as many images, got "
                f"{u.shape[0]} and {x.shape[0]}"
            )
        self._set_context(x)
        try:
            noise, log_det = self.bijector(u)
        finally:
            self._set_context(None)
        return self.base.log_prob(noise) + log_det


def dequantized_elbo(
    flow: Flow,
    dequantizer: VariationalDequantizer,
    x: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""One draw of the ELBO per image, :math:`\log p(x + u) - \log q(u \mid x)`, ``(B,)`` nats.

    ``u ~ q(u | x)`` is reparametrized, so the result can be maximized in the parameters of
    both the flow and the dequantizer. Its expectation bounds the discrete log-likelihood
    :math:`\log P(x) = \log \int_{[0,1)^D} p(x + u)\,du` from below; divided by
    :math:`-D \ln 2` it is a bits/dim bound (:func:`~nf_course.datasets.bits_per_dim`).

    Args:
        flow: a flow on dequantized images in unit-bin space (``y = x + u``).
        dequantizer: the conditional noise model.
        x: integer images ``(B, C, H, W)``.
        generator: source of the noise (torch's global generator when ``None``).
    """
    u, log_q = dequantizer.sample_and_log_prob(x, generator=generator)
    # x + u rounds up to x + 1 when u is within half a float spacing of 1 (at 16 in float32,
    # u > 1 - 1e-6): move it back to the largest float of the bin, as dequantize does.
    y = torch.minimum(x + u, torch.nextafter(x + 1, x))
    return flow.log_prob(y) - log_q


class DequantizedFlow(nn.Module):
    """A flow and its variational dequantizer, trained together on the ELBO.

    It has the two methods :func:`nf_course.training.fit` uses, with integer images as data:
    ``forward_kl(x)`` is the mean negative ELBO of the batch (one draw of ``u`` per image, from
    torch's global generator, which ``fit`` seeds), and ``log_prob(x)`` is one draw of the
    ELBO per image. In eval mode ``log_prob`` draws its noise from a generator seeded with
    ``eval_seed`` at each call, so that validation scores (and early stopping) are
    deterministic.

    Args:
        flow: the flow on ``y = x + u``.
        dequantizer: ``q(u | x)``.
        eval_seed: the seed of the noise in eval mode.
    """

    def __init__(self, flow: Flow, dequantizer: VariationalDequantizer, *, eval_seed: int = 0):
        super().__init__()
        self.flow = flow
        self.dequantizer = dequantizer
        self.eval_seed = eval_seed

    def log_prob(self, x: Tensor) -> Tensor:
        """One draw of the ELBO per image of ``x (B, C, H, W)``: ``(B,)`` nats."""
        generator = None
        if not self.training:
            generator = torch.Generator(x.device).manual_seed(self.eval_seed)
        return dequantized_elbo(self.flow, self.dequantizer, x, generator=generator)

    def forward_kl(self, x: Tensor) -> Tensor:
        """The mean negative ELBO of the batch ``x``, ``()``: the training loss."""
        return -self.log_prob(x).mean()
