"""Continuous-time flows: :class:`CNF` (the Neural ODE flow, with an exact or a Hutchinson
trace), :class:`FFJORD` and the default vector field :class:`TimeConditionedMLP`.

Chapters: ``book/10_neural_ode.md`` (Chen et al. 2018) and ``book/11_ffjord.md`` (Grathwohl et
al. 2019; Hutchinson 1989); tests: ``tests/test_continuous.py``; assignment:
``solutions/08_continuous``; benchmarks: ``benchmarks/cnf_trace.py``, ``benchmarks/kl_2d.py``.
``forward`` runs from the data at ``t0`` to the noise at ``t1``; Isachenko (AI Masters, 2024)
runs from noise to data, so his field is ours reversed, ``-f(z, t0 + t1 - t)``.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from nf_course.common import boolean, choice, positive_float, positive_int, validate_batch
from nf_course.core import Bijector

__all__ = ["CNF", "FFJORD", "TimeConditionedMLP"]

TRACES = ("exact", "hutchinson")
NOISES = ("gaussian", "rademacher")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_STEP_SOLVERS = ("euler", "midpoint", "heun3", "rk4")


class TimeConditionedMLP(nn.Module):
    """The default field ``f(t, z)``: an MLP that sees the time at every layer.

    Each linear layer takes ``[h, t]`` (the "concat" layers of FFJORD), with ``tanh`` between
    them: smooth, with a bounded derivative, so the field is Lipschitz in ``z`` and the ODE has
    unique solutions. The output layer starts at zero, so a fresh CNF is the identity map.

    Args:
        dim: the dimension ``D`` of ``z``.
        hidden: the width of the hidden layers.
        layers: the number of hidden layers.
    """

    def __init__(self, dim: int, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        widths = [dim] + [hidden] * layers + [dim]
        self.linears = nn.ModuleList(nn.Linear(a + 1, b) for a, b in pairwise(widths))
        nn.init.zeros_(self.linears[-1].weight)
        nn.init.zeros_(self.linears[-1].bias)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """``t ()``, ``z (B, D) -> dz/dt (B, D)``."""
        time = t.to(z).expand(z.shape[0], 1)
        h = z
        for index, linear in enumerate(self.linears):
            h = linear(torch.cat([h, time], dim=1))
            if index < len(self.linears) - 1:
                h = torch.tanh(h)
        return h


class _Dynamics(nn.Module):
    """The augmented ODE of one solve: ``(z, ℓ) -> (f(t, z), tr ∂f/∂z)``.

    Built afresh for every solve, holding that solve's noise ``ε`` (``None`` for the exact
    trace), so that the adjoint method's backward solve reuses the same ``ε``. ``calls`` counts
    evaluations.
    """

    def __init__(self, field: nn.Module, noise: Tensor | None) -> None:
        super().__init__()
        self.field = field
        self.noise = noise
        self.calls = 0

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = state[0]
        self.calls += 1
        # The trace needs autograd even under torch.no_grad (evaluation, the adjoint's forward
        # solve); the graph of the result is kept only when the caller records one.
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            if dz.shape != z.shape:
                raise ValueError(
                    f"CNF: the field must map z of shape {tuple(z.shape)} to dz/dt of the same "
                    f"shape, got {tuple(dz.shape)}"
                )
            if self.noise is None:
                trace = _exact_trace(dz, z, keep_graph)
            else:
                trace = _hutchinson_trace(dz, z, self.noise, keep_graph)
        if not keep_graph:
            dz, trace = dz.detach(), trace.detach()
        return dz, trace


def _exact_trace(dz: Tensor, z: Tensor, create_graph: bool) -> Tensor:
    """``Σ_i ∂dz_i/∂z_i`` per sample, by ``D`` backward passes: ``(B, D), (B, D) -> (B,)``."""
    if not dz.requires_grad:  # a field that ignores z and has no parameters
        return dz.new_zeros(dz.shape[0])
    diagonal = []
    for i in range(z.shape[1]):
        (row,) = torch.autograd.grad(
            dz[:, i].sum(), z, create_graph=create_graph, retain_graph=True, materialize_grads=True
        )
        diagonal.append(row[:, i])
    return torch.stack(diagonal, dim=1).sum(dim=1)


def _hutchinson_trace(dz: Tensor, z: Tensor, noise: Tensor, create_graph: bool) -> Tensor:
    """``εᵀ (∂dz/∂z) ε`` per sample, by one vector-Jacobian product: ``(B,)``."""
    if not dz.requires_grad:
        return dz.new_zeros(dz.shape[0])
    (vjp,) = torch.autograd.grad(
        dz, z, grad_outputs=noise, create_graph=create_graph, materialize_grads=True
    )
    return (vjp * noise).sum(dim=1)


class CNF(Bijector):
    r"""Continuous normalizing flow: the time-``t1`` map of ``dz/dt = f(z, t)`` from ``z(t0) = x``.

    ``forward(x)`` solves from ``t0`` to ``t1`` and returns ``(z(t1), ∫ tr ∂f/∂z dt)``;
    ``inverse(z)`` solves from ``t1`` back to ``t0`` and returns ``(z(t0), -∫ tr ∂f/∂z dt)``,
    to the solver's tolerance (see Accuracy below). ``log p(x) = log p_Z(z) + log_det``. The
    state and its log-det are one ODE, ``d(z, ℓ)/dt = (f(z, t), tr ∂f/∂z)`` with ``ℓ = 0`` at
    the start.

    Hutchinson's trace: as in FFJORD, ``ε`` is drawn once per sample and per solve and held
    fixed along the path, so the log-det estimate ``εᵀ (∫ ∂f/∂z dt) ε`` is unbiased for the
    exact log-det. It comes from the global generator: ``torch.manual_seed`` reproduces it.

    Accuracy: each step of an adaptive solver keeps its local error below
    ``atol + rtol·|state|`` (an RMS norm over the whole batch, log-det included), and
    ``inverse`` is the reverse-time solve with the same tolerances, so ``inverse(forward(x))``
    returns ``x`` up to the accumulated global error. Measured in float64: about ``1e-8`` at
    ``rtol = atol = 1e-9`` on the tests' small perturbed fields, about ``5e-4`` at the default
    ``1e-5`` for a default field with every weight perturbed by ``N(0, 0.3²)``; tighten
    ``rtol`` and ``atol`` when the inverse must be accurate. As the steps are chosen for the
    whole batch, a sample's result depends on the rest of the batch at that level of error. A
    fixed-step solver is not inverted exactly by its reverse-time run: its error is that of the
    method at ``step_size``.

    Cost of either direction: ``nfe`` evaluations of the field, each with ``D`` backward passes
    (exact trace) or one vector-Jacobian product (Hutchinson); the NFE grows as the tolerances
    tighten and as the dynamics stiffen during training.

    Args:
        dim: the dimension ``D``.
        hidden: the width of the default field's hidden layers (ignored with ``field``).
        layers: the number of hidden layers of the default field (ignored with ``field``).
        t0, t1: the integration interval, ``t0 < t1``.
        trace: ``"exact"`` (``D`` backward passes per evaluation, deterministic) or
            ``"hutchinson"`` (one vector-Jacobian product, an unbiased estimate). It may be
            switched later, e.g. ``cnf.trace = "exact"`` to evaluate a model trained with the
            estimator.
        noise: the distribution of Hutchinson's ``ε``: ``"gaussian"`` (the default here, the
            estimator as the lecture writes it) or ``"rademacher"`` (lower variance, the
            default of :class:`FFJORD`). Unused by the exact trace.
        solver: a ``torchdiffeq`` method, adaptive (``"dopri5"``, ``"dopri8"``, ``"bosh3"``,
            ``"fehlberg2"``, ``"adaptive_heun"``) or with a fixed step (``"euler"``,
            ``"midpoint"``, ``"heun3"``, ``"rk4"``, which need ``step_size``).
        rtol, atol: the adaptive solver's relative and absolute tolerances (also used by the
            adjoint's backward solve).
        step_size: the step of a fixed-step solver; must be ``None`` for an adaptive one.
        adjoint: back-propagate with ``odeint_adjoint`` (memory independent of the number of
            steps, one more solve backwards) instead of through the solver's operations.
        field: any ``nn.Module`` called as ``field(t, z)`` with ``t`` a 0-dim tensor and
            ``z (B, D)``, returning ``dz/dt (B, D)``; by default a
            :class:`TimeConditionedMLP` whose output layer starts at zero (identity map).

    Attributes:
        field: the vector field.
        nfe: the number of evaluations of the field (each with its trace) made by the last
            ``forward`` or ``inverse`` solve, rejected steps of adaptive solvers and the two
            evaluations of the initial step-size selection included; the adjoint's backward
            solve is not counted. ``0`` before any call.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        t0: float = 0.0,
        t1: float = 1.0,
        trace: str = "exact",
        noise: str = "gaussian",
        solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        step_size: float | None = None,
        adjoint: bool = False,
        field: nn.Module | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        self.dim = positive_int(dim, "dim", where)
        for name, value in (("t0", t0), ("t1", t1)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__}")
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 < t1):
            raise ValueError(f"{where}: need finite t0 < t1, got t0={t0}, t1={t1}")
        self.t0, self.t1 = float(t0), float(t1)
        self.trace = trace
        self.noise = noise
        self.solver = choice(solver, ADAPTIVE_SOLVERS + FIXED_STEP_SOLVERS, "solver", where)
        self.rtol = positive_float(rtol, "rtol", where)
        self.atol = positive_float(atol, "atol", where)
        if solver in FIXED_STEP_SOLVERS:
            if step_size is None:
                raise ValueError(f"{where}: the fixed-step solver {solver!r} needs a step_size")
            self.step_size: float | None = positive_float(step_size, "step_size", where)
        elif step_size is not None:
            raise ValueError(
                f"{where}: step_size is only for fixed-step solvers "
                f"({', '.join(FIXED_STEP_SOLVERS)}); {solver!r} chooses its own steps"
            )
        else:
            self.step_size = None
        self.adjoint = boolean(adjoint, "adjoint", where)
        if field is None:
            positive_int(hidden, "hidden", where)
            positive_int(layers, "layers", where)
            field = TimeConditionedMLP(dim, hidden, layers)
        elif not isinstance(field, nn.Module):
            raise TypeError(
                f"{where}: field must be an nn.Module called as field(t, z), got "
                f"{type(field).__name__}"
            )
        self.field = field
        self.nfe = 0

    @property
    def trace(self) -> str:
        """``"exact"`` or ``"hutchinson"``."""
        return self._trace

    @trace.setter
    def trace(self, value: str) -> None:
        self._trace = choice(value, TRACES, "trace", type(self).__name__)

    @property
    def noise(self) -> str:
        """``"gaussian"`` or ``"rademacher"``: the distribution of Hutchinson's ``ε``."""
        return self._noise

    @noise.setter
    def noise(self, value: str) -> None:
        self._noise = choice(value, NOISES, "noise", type(self).__name__)

    def _draw_noise(self, like: Tensor) -> Tensor | None:
        """Hutchinson's ``ε`` for one solve, ``(B, D)`` from the global generator, or ``None``."""
        if self.trace == "exact":
            return None
        if self.noise == "gaussian":
            return torch.randn(like.shape, dtype=like.dtype, device=like.device)
        signs = torch.randint(0, 2, like.shape, device=like.device)
        return (2 * signs - 1).to(like.dtype)

    def _solve(self, start: Tensor, times: Tensor) -> tuple[Tensor, Tensor]:
        """Integrate ``(z, ℓ)`` over ``times = [from, to]``; returns their final values."""
        dynamics = _Dynamics(self.field, self._draw_noise(start))
        state = (start, start.new_zeros(start.shape[0]))
        options = None if self.step_size is None else {"step_size": self.step_size}
        solve = odeint_adjoint if self.adjoint else odeint
        z_path, log_det_path = solve(
            dynamics,
            state,
            times,
            rtol=self.rtol,
            atol=self.atol,
            method=self.solver,
            options=options,
        )
        self.nfe = dynamics.calls
        return z_path[-1], log_det_path[-1]

    def _times(self, x: Tensor, reverse: bool) -> Tensor:
        times = torch.tensor([self.t0, self.t1], dtype=x.dtype, device=x.device)
        return times.flip(0) if reverse else times

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = z(t1) (B, D), ∫_{t0}^{t1} tr ∂f/∂z dt (B,))``."""
        validate_batch(x, (self.dim,), where=f"{type(self).__name__}.forward")
        return self._solve(x, self._times(x, reverse=False))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x = z(t0) (B, D), -∫_{t0}^{t1} tr ∂f/∂z dt (B,))``."""
        validate_batch(z, (self.dim,), where=f"{type(self).__name__}.inverse", name="z")
        return self._solve(z, self._times(z, reverse=True))

    def trajectory(self, x: Tensor, n_times: int = 50) -> tuple[Tensor, Tensor]:
        """The path of each point from ``t0`` to ``t1``, without log-dets or gradients.

        Args:
            x: starting points ``z(t0)``, ``(B, D)``.
            n_times: number of equally spaced times in ``[t0, t1]``, both ends included.

        Returns:
            ``(times (n_times,), states (n_times, B, D))`` with ``states[0] = x`` and
            ``states[-1]`` the ``z`` of :meth:`forward` (to the solver's tolerance).
        """
        where = f"{type(self).__name__}.trajectory"
        validate_batch(x, (self.dim,), where=where)
        positive_int(n_times, "n_times", where, minimum=2)
        times = torch.linspace(self.t0, self.t1, n_times, dtype=x.dtype, device=x.device)
        options = None if self.step_size is None else {"step_size": self.step_size}
        with torch.no_grad():
            states = odeint(
                self.field,
                x,
                times,
                rtol=self.rtol,
                atol=self.atol,
                method=self.solver,
                options=options,
            )
        return times, states

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, t0={self.t0:g}, t1={self.t1:g}, trace={self.trace!r}, "
            f"noise={self.noise!r}, solver={self.solver!r}, rtol={self.rtol:g}, "
            f"atol={self.atol:g}, adjoint={self.adjoint}"
        )


class FFJORD(CNF):
    """FFJORD (Grathwohl et al. 2019): a :class:`CNF` with Hutchinson's trace estimator.

    One vector-Jacobian product per evaluation of the field instead of ``D`` backward passes,
    which makes free-form fields affordable in high dimension. Defaults: ``trace="hutchinson"``
    and ``noise="rademacher"``, whose variance ``2(‖S‖_F² − Σ S_ii²)`` is never above the
    Gaussian ``2‖S‖_F²``, with ``S`` the symmetric part of the integrated Jacobian (derived in
    ``book/11_ffjord.md``). All arguments are those of :class:`CNF`; set
    ``model.trace = "exact"`` for a deterministic evaluation (cheap in 2D).
    """

    def __init__(
        self, dim: int, *, trace: str = "hutchinson", noise: str = "rademacher", **options: object
    ) -> None:
        super().__init__(dim, trace=trace, noise=noise, **options)
