"""The core of a normalizing flow: the :class:`Bijector` interface, :class:`Compose`,
:class:`Inverse`, the base :class:`StandardNormal` and the :class:`Flow` that joins them.

Chapter: ``book/02_change_of_variables.md`` (the objectives: ``book/03_fitting_flows.md``);
tests: ``tests/test_core.py``, and ``tests/test_contract.py`` for the contract of every bijector;
assignment: ``solutions/01_change_of_variables``. ``forward`` is the normalizing map
``z = f(x)``, ``inverse`` the generative one, each returning ``(output, log_det)`` with
``log_det`` of shape ``(B,)``; Grover (UCLA, 2019) calls the generative map ``f``, Yang and
Ryu (2020) call it ``g`` as we do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nf_course.common import positive_int, validate_batch

__all__ = [
    "Bijector",
    "Compose",
    "Flow",
    "Inverse",
    "StandardNormal",
    "positive_int",
    "validate_batch",
]


class Bijector(nn.Module):
    """Base class of an invertible, differentiable map with a tractable log-determinant.

    Subclasses implement both directions:

    * ``forward(x) -> (z, log_det)``: the normalizing map ``z = f(x)``, with
      ``log_det = log|det ∂f/∂x|`` at ``x``;
    * ``inverse(z) -> (x, log_det)``: the generative map ``x = g(z) = f⁻¹(z)``, with
      ``log_det = log|det ∂g/∂z|`` at ``z``.

    Inputs are batches ``(B, D)`` or ``(B, C, H, W)``; ``log_det`` has shape ``(B,)``.
    A bijector never modifies its input in place and treats the samples of a batch
    independently. Subclassing is a convenience, not a requirement: the checker in
    :mod:`nf_course.checks` accepts any object with these two methods.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalizing direction: ``(B, *shape) -> ((B, *shape'), (B,))``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Generative direction: ``(B, *shape') -> ((B, *shape), (B,))``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement inverse")


class Compose(Bijector):
    """The composition ``f = f_K ∘ … ∘ f_1`` of bijectors given in the order data → noise.

    ``forward`` applies ``f_1`` first and sums the log-determinants (the chain rule);
    ``inverse`` undoes them from ``f_K`` back to ``f_1``.
    """

    def __init__(self, *bijectors: nn.Module) -> None:
        super().__init__()
        if len(bijectors) == 1 and isinstance(bijectors[0], list | tuple):
            bijectors = tuple(bijectors[0])
        for index, bijector in enumerate(bijectors):
            if not (callable(getattr(bijector, "forward", None)) and hasattr(bijector, "inverse")):
                raise TypeError(
                    f"Compose: argument {index} ({type(bijector).__name__}) is not a bijector: "
                    "it needs forward(x) and inverse(z) methods"
                )
        self.bijectors = nn.ModuleList(bijectors)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, …) -> (z, Σ_k log|det ∂f_k|)``, ``log_det (B,)``."""
        total = x.new_zeros(x.shape[0])
        for bijector in self.bijectors:
            x, log_det = bijector(x)
            total = total + log_det
        return x, total

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, …) -> (x, Σ_k log|det ∂g_k|)``, ``log_det (B,)``."""
        total = z.new_zeros(z.shape[0])
        for bijector in reversed(self.bijectors):
            z, log_det = bijector.inverse(z)
            total = total + log_det
        return z, total

    def __len__(self) -> int:
        return len(self.bijectors)

    def __getitem__(self, index: int) -> nn.Module:
        return self.bijectors[index]


class Inverse(Bijector):
    """The bijector ``f⁻¹``: swaps the two directions of ``bijector``.

    An inverse autoregressive flow, for instance, is the inverse of a masked autoregressive
    layer: what was cheap in one direction becomes cheap in the other.
    """

    def __init__(self, bijector: nn.Module) -> None:
        super().__init__()
        self.bijector = bijector

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, …) -> (g(x), log|det ∂g/∂x|)``."""
        return self.bijector.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, …) -> (f(z), log|det ∂f/∂z|)``."""
        return self.bijector(z)


class StandardNormal(nn.Module):
    """The standard normal base distribution :math:`\\mathcal N(0, I)` on ``event_shape``.

    Follows ``torch.distributions`` semantics: ``log_prob`` sums over the event dimensions,
    ``sample(sample_shape)`` returns ``(*sample_shape, *event_shape)``. It is a module (with
    no parameters) so that ``flow.to(device, dtype)`` moves it along with the bijector.

    Args:
        event_shape: shape of one sample, e.g. ``2`` or ``(2,)`` for 2D data,
            ``(1, 8, 8)`` for 8x8 images.
    """

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        if not shape or any(int(size) <= 0 for size in shape):
            raise ValueError(f"StandardNormal: event_shape must be positive sizes, got {shape}")
        self.event_shape = torch.Size(int(size) for size in shape)
        # A zero-size buffer that carries the device and dtype of the distribution.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def dim(self) -> int:
        """Number of elements of one sample."""
        return self.event_shape.numel()

    def log_prob(self, z: Tensor) -> Tensor:
        """``z (B, *event_shape) -> (B,)``: ``-½‖z‖² - (D/2) log 2π``."""
        validate_batch(z, self.event_shape, where="StandardNormal.log_prob", name="z")
        squared_norm = z.reshape(z.shape[0], -1).square().sum(dim=1)
        return -0.5 * squared_norm - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``(*sample_shape, *event_shape)`` samples of :math:`\\mathcal N(0, T^2 I)`.

        Args:
            sample_shape: number of samples (an int) or a shape.
            temperature: standard deviation ``T`` (Glow's reduced-temperature sampling).
            generator: a ``torch.Generator`` for reproducible draws.
        """
        shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        noise = torch.randn(
            (*shape, *self.event_shape),
            generator=generator,
            dtype=self._anchor.dtype,
            device=self._anchor.device,
        )
        return noise * temperature

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class Flow(nn.Module):
    """A normalizing flow: a bijector ``f`` (data → noise) and a base distribution ``p_Z``.

    Args:
        bijector: any module with ``forward(x) -> (z, log_det)`` and
            ``inverse(z) -> (x, log_det)``.
        base: the base distribution, with ``log_prob(z) -> (B,)``, ``sample(shape)`` and an
            ``event_shape`` (e.g. :class:`StandardNormal`).

    Example:
        >>> flow = Flow(Compose(...), StandardNormal(2))            # doctest: +SKIP
        >>> loss = flow.forward_kl(x_batch)                          # doctest: +SKIP
    """

    def __init__(self, bijector: nn.Module, base: nn.Module) -> None:
        super().__init__()
        if not (callable(getattr(bijector, "forward", None)) and hasattr(bijector, "inverse")):
            raise TypeError(
                f"Flow: bijector must have forward and inverse methods, got {type(bijector)}"
            )
        if not (hasattr(base, "log_prob") and hasattr(base, "sample")):
            raise TypeError(f"Flow: base must have log_prob and sample methods, got {type(base)}")
        self.bijector = bijector
        self.base = base

    @property
    def event_numel(self) -> int:
        """Number of elements of one sample (the same in data and noise space)."""
        return torch.Size(self.base.event_shape).numel()

    def _check_data(self, x: object, where: str) -> Tensor:
        x = validate_batch(x, None, where=where)
        numel = x[0].numel()
        if numel != self.event_numel:
            raise ValueError(
                f"{where}: each sample of x must have {self.event_numel} elements "
                f"(base event shape {tuple(self.base.event_shape)}), got shape {tuple(x.shape)}"
            )
        parameter = (
            next(self.bijector.parameters(), None) if isinstance(self.bijector, nn.Module) else None
        )
        if parameter is not None and parameter.dtype != x.dtype:
            raise TypeError(
                f"{where}: x has dtype {x.dtype} but the flow's parameters are {parameter.dtype}; "
                f"convert one of them (x.to({parameter.dtype}) or flow.to({x.dtype}))"
            )
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """``x (B, *shape) -> (B,)``: ``log p_Z(f(x)) + log|det ∂f/∂x|``."""
        x = self._check_data(x, "Flow.log_prob")
        z, log_det = self.bijector(x)
        return self.base.log_prob(z) + log_det

    def sample(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``n`` samples ``x = g(z)``, ``z ~ p_Z``, without gradients: ``(n, *shape)``.

        ``temperature`` scales the base noise (Glow's reduced-temperature samples).
        Use :meth:`sample_and_log_prob` for differentiable (reparametrized) samples.
        """
        with torch.no_grad():
            z = self.base.sample((n,), temperature=temperature, generator=generator)
            x, _ = self.bijector.inverse(z)
        return x

    def sample_and_log_prob(
        self, n: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` reparametrized samples and their log-density: ``((n, *shape), (n,))``.

        Uses the generative direction only, ``log p(g(z)) = log p_Z(z) - log|det ∂g/∂z|``:
        ``forward`` is never called, so this works for flows whose forward is expensive (IAF).
        Gradients flow to the parameters (the reparametrization trick).
        """
        z = self.base.sample((n,), generator=generator)
        x, log_det = self.bijector.inverse(z)
        return x, self.base.log_prob(z) - log_det

    def forward_kl(self, x: Tensor) -> Tensor:
        """Mean negative log-likelihood of the batch ``x``: the maximum-likelihood loss, ``()``.

        It equals ``KL(π ‖ p_θ)`` up to the data entropy ``H(π)``, a constant.
        """
        return -self.log_prob(x).mean()

    def reverse_kl(
        self,
        log_target: Callable[[Tensor], Tensor],
        n: int,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Monte Carlo estimate of ``KL(p_θ ‖ π) - log Z`` from ``n`` samples, ``()``.

        Args:
            log_target: unnormalized log-density ``log π̃``: ``(n, *shape) -> (n,)``.
            n: number of samples.
            generator: a ``torch.Generator`` for reproducible draws.

        Adding the target's ``log Z`` gives the reverse KL itself (always ``≥ 0``).
        """
        x, log_q = self.sample_and_log_prob(n, generator=generator)
        log_p = log_target(x)
        if not isinstance(log_p, Tensor) or log_p.shape != log_q.shape:
            raise ValueError(
                f"Flow.reverse_kl: log_target must return shape ({n},), got "
                f"{getattr(log_p, 'shape', type(log_p).__name__)}"
            )
        return (log_q - log_p).mean()
