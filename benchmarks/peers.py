"""The same flow built in nf_course and in the peer libraries (pyro, zuko, nflows), seen
through one interface, for the benchmarks that compare them (``peer_step.py``: the cost of a
training step; ``kl_2d_peers.py``: the fit reached on a CPU budget).

Kinds of flow (``LAYERS`` layers on ``R^D``; every conditioner an MLP with ``depth`` hidden
layers of ``hidden`` units and SiLU activations, in every library):

* ``realnvp``: affine couplings, alternating halves (nf_course ``AffineCoupling``; pyro
  ``AffineCoupling`` with a ``Permute`` between layers, as its ``affine_coupling`` helper
  builds them; zuko ``flows.RealNVP``; nflows ``AffineCouplingTransform``).
* ``maf``: masked affine autoregressive layers, orders alternating natural / reversed
  (nf_course ``MAF``; pyro ``AffineAutoregressive``, whose forward map is the sampling
  direction, so its density is the sequential pass; zuko ``flows.MAF``; nflows
  ``MaskedAffineAutoregressiveTransform`` with ``ReversePermutation``).
* ``spline``: rational-quadratic spline couplings, ``BINS`` bins on ``[-BOUND, BOUND]`` with
  identity tails (nf_course ``SplineCoupling``; pyro ``SplineCoupling(order="quadratic")``;
  zuko ``flows.NSF`` with ``passes=2``, i.e. coupling; nflows
  ``PiecewiseRationalQuadraticCouplingTransform``).
* ``ffjord``: one continuous flow, Hutchinson's trace estimate in training and the exact trace
  for the score, adaptive dopri5 with ``rtol = atol = 1e-5`` (nf_course ``FFJORD``; zuko
  ``flows.CNF(exact=False)`` with the same tolerances; its field keeps zuko's own design:
  sin/cos features of ``t`` and ELU).

What stays different is what each library chooses inside a layer: how the scale is
parametrized and clamped, how the output layer is initialized, the spline's minimum bin size
and slope. That is what a comparison at equal size measures.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from kl_2d import build_flow
from torch import Tensor, nn

from nf_course.bijectors import CNF

try:
    import zuko
except ImportError:  # a peer is optional: pip install -e ".[bench]"
    zuko = None
try:
    from nflows import distributions as nflows_distributions
    from nflows import flows as nflows_flows
    from nflows import transforms as nflows_transforms
except ImportError:
    nflows_transforms = None
try:
    import pyro.distributions as pyro_distributions
    from pyro.distributions import transforms as pyro_transforms
    from pyro.nn import AutoRegressiveNN, DenseNN
except ImportError:
    pyro_transforms = None

# A diverging flow produces NaNs. With argument validation on, torch's distributions (pyro's and
# zuko's base densities) raise a ValueError on them in the middle of a run; off, the NaN reaches
# the loss, where ``fit`` stops with a FloatingPointError and ``kl_2d_peers.py`` counts the run
# as diverged, whatever the library.
torch.distributions.Distribution.set_default_validate_args(False)

LAYERS = 8  # flow layers (the continuous flow has one)
HIDDEN = 64  # the package defaults of the conditioners: two hidden layers of 64 units
DEPTH = 2
BINS = 8  # spline bins
BOUND = 5.0  # spline interval [-BOUND, BOUND]; the 2D targets live in about [-4, 4]^2
ODE_TOLERANCE = 1e-5  # rtol = atol of zuko's solver: nf_course's FFJORD defaults

KINDS = ("realnvp", "maf", "spline", "ffjord")
LIBRARIES = ("nf_course", "pyro", "zuko", "nflows")
_HAS = {
    "nf_course": set(KINDS),
    "pyro": {"realnvp", "maf", "spline"},
    "zuko": set(KINDS),
    "nflows": {"realnvp", "maf", "spline"},
}
_INSTALLED = {
    "nf_course": True,
    "pyro": pyro_transforms is not None,
    "zuko": zuko is not None,
    "nflows": nflows_transforms is not None,
}


class Model(nn.Module):
    """A flow of any library seen through the interface :func:`nf_course.training.fit` and the
    benchmarks use: ``log_prob(x) (B, D) -> (B,)`` and ``forward_kl(x)``, the mean NLL.

    Args:
        flow: the library's module (its parameters are this module's).
        log_prob: its log-density.
        for_scoring: prepares it for an exact score after training (a continuous flow trained
            with Hutchinson's estimate switches to the exact trace); ``None``: nothing to do.
        field: a continuous flow's field network, whose calls count its function evaluations
            (forward solve and, in zuko, the adjoint's); ``None`` for the other flows.
    """

    def __init__(
        self,
        flow: nn.Module,
        log_prob: Callable[[Tensor], Tensor],
        for_scoring: Callable[[], None] | None = None,
        field: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.flow = flow
        self._log_prob = log_prob
        self._for_scoring = for_scoring
        self.field_calls = 0
        if field is not None:
            field.register_forward_hook(self._count_field_call)

    def _count_field_call(self, *_: object) -> None:
        self.field_calls += 1

    def log_prob(self, x: Tensor) -> Tensor:
        """``(B, D) -> (B,)``."""
        return self._log_prob(x)

    def forward_kl(self, x: Tensor) -> Tensor:
        """The mean negative log-likelihood of ``x (B, D)``."""
        return -self.log_prob(x).mean()

    def prepare_scoring(self) -> None:
        """Eval mode, and the exact density where training used an estimate."""
        self.eval()
        if self._for_scoring is not None:
            self._for_scoring()


def available(kind: str) -> list[str]:
    """The libraries, nf_course first, that are installed and have a flow of ``kind``."""
    return [lib for lib in LIBRARIES if _INSTALLED[lib] and kind in _HAS[lib]]


def build(
    kind: str,
    library: str,
    dim: int = 2,
    *,
    hidden: int = HIDDEN,
    depth: int = DEPTH,
    seed: int = 0,
) -> Model:
    """The flow ``kind`` (one of :data:`KINDS`) of ``library`` on ``R^dim``, initialized from
    ``seed``."""
    if kind not in _HAS[library] or not _INSTALLED[library]:
        raise ValueError(f"{library} has no {kind} flow here (installed: {_INSTALLED[library]})")
    if library == "nf_course":
        return _ours(kind, dim, hidden, depth, seed)
    torch.manual_seed(seed)
    builder = {"pyro": _pyro, "zuko": _zuko, "nflows": _nflows}[library]
    return builder(kind, dim, hidden, depth)


def _ours(kind: str, dim: int, hidden: int, depth: int, seed: int) -> Model:
    """``kl_2d.build_flow``'s flow (FFJORD's tolerances are the package defaults, 1e-5)."""
    flow = build_flow(kind, dim, hidden=hidden, depth=depth, seed=seed)
    field = flow.bijector.bijectors[0].field if kind == "ffjord" else None

    def exact_trace() -> None:
        for module in flow.modules():
            if isinstance(module, CNF):
                module.trace = "exact"

    return Model(flow, flow.log_prob, exact_trace, field)


def _pyro(kind: str, dim: int, hidden: int, depth: int) -> Model:
    t, silu, hidden_dims = pyro_transforms, nn.SiLU(), [hidden] * depth
    split = dim // 2
    moved = dim - split
    reverse = torch.arange(dim - 1, -1, -1)
    layers: list = []
    for i in range(LAYERS):
        if kind == "realnvp":
            net = DenseNN(split, hidden_dims, param_dims=[moved, moved], nonlinearity=silu)
            layers.append(t.AffineCoupling(split, net))
        elif kind == "maf":
            net = AutoRegressiveNN(
                dim, hidden_dims, permutation=torch.arange(dim), nonlinearity=silu
            )
            layers.append(t.AffineAutoregressive(net))
        else:
            params = [moved * BINS, moved * BINS, moved * (BINS - 1)]
            net = DenseNN(split, hidden_dims, param_dims=params, nonlinearity=silu)
            layers.append(t.SplineCoupling(dim, split, net, BINS, BOUND, order="quadratic"))
        if i < LAYERS - 1:
            layers.append(t.Permute(reverse))
    modules = nn.ModuleList([layer for layer in layers if isinstance(layer, nn.Module)])
    base = pyro_distributions.Normal(torch.zeros(dim), torch.ones(dim)).to_event(1)
    distribution = pyro_distributions.TransformedDistribution(base, layers)
    # Each pyro layer caches its last (x, y) pair, which spares its log-det a second inverse;
    # a call on the very tensor of the previous call would reuse that call's freed graph, so
    # every call gets a tensor of its own (peer_step.py feeds one batch again and again).
    return Model(modules, lambda x: distribution.log_prob(x.clone()))


def _zuko(kind: str, dim: int, hidden: int, depth: int) -> Model:
    common = {"hidden_features": (hidden,) * depth, "activation": nn.SiLU}
    if kind == "ffjord":
        flow = zuko.flows.CNF(
            dim,
            exact=False,
            atol=ODE_TOLERANCE,
            rtol=ODE_TOLERANCE,
            hidden_features=(hidden,) * depth,
        )

        def exact_trace() -> None:
            flow.transform.exact = True

        return Model(flow, lambda x: flow().log_prob(x), exact_trace, flow.transform.ode)
    if kind == "maf":
        flow = zuko.flows.MAF(dim, transforms=LAYERS, **common)
    elif kind == "realnvp":
        flow = zuko.flows.RealNVP(dim, transforms=LAYERS, **common)
    else:
        flow = zuko.flows.NSF(dim, bins=BINS, passes=2, transforms=LAYERS, **common)
    return Model(flow, lambda x: flow().log_prob(x))


class _MLP(nn.Module):
    """nflows' coupling conditioner, called as ``net(x, context)``: the same MLP as ours."""

    def __init__(self, in_features: int, out_features: int, hidden: int, depth: int) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * depth
        modules: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            modules += [nn.Linear(width_in, width_out), nn.SiLU()]
        self.net = nn.Sequential(*modules, nn.Linear(hidden, out_features))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def _nflows(kind: str, dim: int, hidden: int, depth: int) -> Model:
    t = nflows_transforms

    def conditioner(in_features: int, out_features: int) -> nn.Module:
        return _MLP(in_features, out_features, hidden, depth)

    layers = []
    for i in range(LAYERS):
        mask = torch.tensor([1 if (j + i) % 2 else -1 for j in range(dim)])  # +1: transformed
        if kind == "maf":
            layers.append(
                t.MaskedAffineAutoregressiveTransform(
                    features=dim,
                    hidden_features=hidden,
                    num_blocks=depth - 1,  # an initial layer, then blocks of one layer each
                    use_residual_blocks=False,
                    activation=nn.functional.silu,
                )
            )
            layers.append(t.ReversePermutation(features=dim))
        elif kind == "realnvp":
            layers.append(t.AffineCouplingTransform(mask, conditioner))
        else:
            layers.append(
                t.PiecewiseRationalQuadraticCouplingTransform(
                    mask, conditioner, num_bins=BINS, tails="linear", tail_bound=BOUND
                )
            )
    flow = nflows_flows.Flow(
        t.CompositeTransform(layers), nflows_distributions.StandardNormal([dim])
    )
    return Model(flow, flow.log_prob)
