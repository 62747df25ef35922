r"""One training step of the same architecture in nf_course, zuko and nflows, side by side.

What it measures. For each architecture in ``--archs`` it builds the flow in nf_course and in
the peers that are installed (zuko, nflows; ``pip install -e .[bench]``), all on ``R^D`` with
``--dim`` (default 2, the toy targets), and times one maximum-likelihood training step on the
same fixed batch of ``--batch`` standard-normal-times-two samples: ``zero_grad``, mean negative
log-likelihood, ``backward``, ``Adam.step``. The steps of the libraries are interleaved (one
step of each in turn, ``--steps`` rounds after ``--warmup`` untimed ones), so that load from
other processes hits them alike, and each library's median time per step is reported with
the ratio ``ours / peer`` (below 1: nf_course is faster).

Architectures (``LAYERS`` layers, conditioners with two hidden layers of ``HIDDEN`` units and
SiLU activations in every library, Adam at lr 1e-3):

* ``maf``: masked affine autoregressive layers, orders alternating natural / reversed
  (nf_course ``MAF``; zuko ``flows.MAF``; nflows ``MaskedAffineAutoregressiveTransform``
  followed by ``ReversePermutation``).
* ``realnvp``: affine couplings with alternating masks (nf_course ``AffineCoupling``; zuko
  ``flows.RealNVP``; nflows ``AffineCouplingTransform``).
* ``spline``: rational-quadratic spline couplings, 8 bins on [-5, 5] with linear tails
  (nf_course ``SplineCoupling``; zuko ``flows.NSF`` with ``passes=2``, i.e. coupling; nflows
  ``PiecewiseRationalQuadraticCouplingTransform``).

The remaining differences (how each library parametrizes the scale, the spline's minimum
bin size and slope, zuko's lazy re-building of the distribution at each call) are part of
what is measured; the parameter counts are printed so that the sizes can be compared.

Run::

    .venv/bin/python benchmarks/peer_step.py --help
    .venv/bin/python benchmarks/peer_step.py
    .venv/bin/python benchmarks/peer_step.py --dim 16 --archs maf realnvp --steps 100
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from importlib import metadata

import torch
from torch import nn

from nf_course.bijectors import MAF, AffineCoupling, SplineCoupling
from nf_course.core import Compose, Flow, StandardNormal

try:
    import zuko
except ImportError:  # a peer is optional
    zuko = None
try:
    import nflows
    from nflows import distributions as nflows_distributions
    from nflows import flows as nflows_flows
    from nflows import transforms as nflows_transforms
except ImportError:
    nflows = None

# Architecture: the same in every library.
LAYERS = 8  # flow layers
HIDDEN = 64  # width of the conditioners' two hidden layers
BINS = 8  # spline bins
BOUND = 5.0  # spline interval [-BOUND, BOUND], linear (identity) tails outside
LR = 1e-3
SEED = 0

ARCHS = ("maf", "realnvp", "spline")

# A training step: () -> loss tensor (the caller does zero_grad, backward and step).
LossFn = Callable[[], torch.Tensor]


def ours(arch: str, dim: int) -> Flow:
    """The nf_course flow."""
    if arch == "maf":
        orders = ("natural", "reversed")
        layers = [MAF(dim, hidden=(HIDDEN, HIDDEN), order=orders[i % 2]) for i in range(LAYERS)]
    elif arch == "realnvp":
        layers = [AffineCoupling(dim, hidden=HIDDEN, layers=2, parity=i % 2) for i in range(LAYERS)]
    else:
        layers = [
            SplineCoupling(dim, bins=BINS, bound=BOUND, hidden=HIDDEN, layers=2, parity=i % 2)
            for i in range(LAYERS)
        ]
    return Flow(Compose(*layers), StandardNormal(dim))


def zuko_flow(arch: str, dim: int) -> nn.Module:
    """The zuko flow (a lazy distribution: ``flow().log_prob(x)``)."""
    common = {"transforms": LAYERS, "hidden_features": (HIDDEN, HIDDEN), "activation": nn.SiLU}
    if arch == "maf":
        return zuko.flows.MAF(dim, **common)
    if arch == "realnvp":
        return zuko.flows.RealNVP(dim, **common)
    return zuko.flows.NSF(dim, bins=BINS, passes=2, **common)


class _MLP(nn.Module):
    """nflows coupling conditioner, called as ``net(x, context)``: nf_course's MLP."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, HIDDEN),
            nn.SiLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.SiLU(),
            nn.Linear(HIDDEN, out_features),
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


def nflows_flow(arch: str, dim: int) -> nn.Module:
    """The nflows flow."""
    t = nflows_transforms
    layers = []
    for i in range(LAYERS):
        mask = torch.tensor([1 if (j + i) % 2 else -1 for j in range(dim)])  # +1: transformed
        if arch == "maf":
            layers.append(
                t.MaskedAffineAutoregressiveTransform(
                    features=dim,
                    hidden_features=HIDDEN,
                    num_blocks=1,  # initial layer + 1 block = two hidden layers
                    use_residual_blocks=False,
                    activation=nn.functional.silu,
                )
            )
            layers.append(t.ReversePermutation(features=dim))
        elif arch == "realnvp":
            layers.append(t.AffineCouplingTransform(mask, _MLP))
        else:
            layers.append(
                t.PiecewiseRationalQuadraticCouplingTransform(
                    mask, _MLP, num_bins=BINS, tails="linear", tail_bound=BOUND
                )
            )
    return nflows_flows.Flow(
        t.CompositeTransform(layers), nflows_distributions.StandardNormal([dim])
    )


def contenders(arch: str, dim: int) -> dict[str, tuple[nn.Module, Callable]]:
    """``library -> (module, log_prob(x))`` for the libraries that are installed."""
    torch.manual_seed(SEED)
    flow = ours(arch, dim)
    result = {"nf_course": (flow, flow.log_prob)}
    if zuko is not None:
        torch.manual_seed(SEED)
        zflow = zuko_flow(arch, dim)
        result["zuko"] = (zflow, lambda x, zflow=zflow: zflow().log_prob(x))
    if nflows is not None:
        torch.manual_seed(SEED)
        nflow = nflows_flow(arch, dim)
        result["nflows"] = (nflow, nflow.log_prob)
    return result


def step_fn(module: nn.Module, log_prob: Callable, x: torch.Tensor) -> Callable[[], None]:
    """One Adam step of maximum likelihood on ``x``."""
    optimizer = torch.optim.Adam(module.parameters(), lr=LR)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = -log_prob(x).mean()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Median time of one training step (NLL, backward, Adam) of the same flow "
        "in nf_course, zuko and nflows, interleaved in one run; ratio ours/peer.",
    )
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--dim", type=int, default=2, help="dimension D (default 2)")
    parser.add_argument("--batch", type=int, default=1024, help="batch size (default 1024)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps each (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # nflows warns about its own spline initialization at every call; it is not ours to fix.
    warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled down")
    versions = [f"torch {torch.__version__}"]
    versions += [f"zuko {zuko.__version__}"] if zuko is not None else ["zuko not installed"]
    versions += [f"nflows {metadata.version('nflows')}"] if nflows is not None else ["no nflows"]
    print(
        f"D={args.dim}, batch {args.batch}, {LAYERS} layers, MLP 2x{HIDDEN} SiLU, median of "
        f"{args.steps} interleaved steps, {args.threads} threads; {', '.join(versions)}"
    )
    x = 2 * torch.randn(args.batch, args.dim, generator=torch.Generator().manual_seed(SEED))
    rows = []
    for arch in args.archs:
        libs = contenders(arch, args.dim)
        steps = {name: step_fn(module, lp, x) for name, (module, lp) in libs.items()}
        for _ in range(args.warmup):
            for step in steps.values():
                step()
        times = {name: [] for name in steps}
        for _ in range(args.steps):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        ours_ms = 1000 * statistics.median(times["nf_course"])
        for name, (module, _) in libs.items():
            ms = 1000 * statistics.median(times[name])
            params = sum(p.numel() for p in module.parameters())
            rows.append((arch, name, params, ms, ours_ms / ms))
    header = f"{'arch':<8} {'library':<10} {'params':>8} {'ms/step':>8} {'ours/peer':>10}"
    print()
    print(header)
    print("-" * len(header))
    for arch, name, params, ms, ratio in rows:
        ratio_text = "-" if name == "nf_course" else f"{ratio:.2f}"
        print(f"{arch:<8} {name:<10} {params:>8} {ms:>8.2f} {ratio_text:>10}")


if __name__ == "__main__":
    main()
