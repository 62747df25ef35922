r"""Cost of a CNF's log-determinant with the exact trace and with Hutchinson's estimator, against D.

What it measures. For each D in ``--dims`` (default 2 8 32 128) one :class:`CNF` with a
time-conditioned MLP field (two hidden layers of ``--hidden`` units, generic random weights, the
same seed for both traces) on a batch of ``--batch`` standard normal points, for
``trace="exact"`` and ``trace="hutchinson"`` (Rademacher noise):

* ``NFE``: evaluations of the field in one solve (``CNF.nfe``; dopri5 by default, so it
  depends on D, on the weights and, slightly, on the trace, whose values enter the error
  control);
* ``passes/eval``: backward passes (``torch.autograd.grad`` calls, counted by wrapping it) per
  evaluation: D for the exact trace (the lecture's :math:`O(m^2)`: :math:`m` passes that each
  cost about one evaluation), 1 for Hutchinson's vector-Jacobian product;
* ``eval ms``: median time of ``forward(x)`` under ``torch.no_grad()`` (a density evaluation;
  the traces still run autograd inside the field);
* ``train ms``: median time of one loss evaluation and its backward pass,
  ``mean(|z|²/2 - log_det)`` (the Gaussian NLL up to a constant), gradients through the solver;
* ``peak MiB``: the peak of the extra CPU memory held by torch's allocator during that
  training forward and backward, from ``torch.profiler`` with ``profile_memory=True`` (the
  running sum of the allocator's allocation and free events, in time order). It is not
  tracemalloc, which does not see tensor memory.

Times are medians over ``--repeats`` calls after ``--warmup`` untimed ones, with
``time.perf_counter``; ``xD=`` is the ratio to the smallest D of the same trace.

Peer (``--peer-steps`` > 0 and ``zuko`` installed, ``pip install -e .[bench]``): one training
step (zero_grad, NLL, backward, Adam) of our :class:`FFJORD` and of zuko's ``flows.CNF`` with
``exact=False`` (its free-form Jacobian transform, Gaussian noise) on ``--peer-dim`` dimensions,
both with two hidden layers of ``--hidden`` units, default PyTorch initialization of every layer
(so neither starts as the identity), ``atol = 1e-6`` and ``rtol = 1e-5`` (zuko's defaults). The
steps alternate between the two libraries. The networks differ in what the lectures leave
open: ours feeds ``t`` to every layer with tanh, zuko feeds sin/cos features of ``t`` to the
first layer with ELU; zuko integrates with its own dopri5 and back-propagates by an adaptive
checkpoint adjoint, ours back-propagates through torchdiffeq's operations. ``calls/step`` counts
every call of the field network in a step (forward solve, and zuko's re-evaluations in its
backward pass), so the per-step ratio mixes the cost per call with the number of calls.

Run::

    .venv/bin/python benchmarks/cnf_trace.py --help
    .venv/bin/python benchmarks/cnf_trace.py
    .venv/bin/python benchmarks/cnf_trace.py --dims 2 8 32 --batch 128 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from nf_course.bijectors.continuous import CNF, FFJORD
from nf_course.core import Flow, StandardNormal
from nf_course.profiling import counting_backward_passes, median_seconds

try:
    import zuko
except ImportError:  # the peer is optional
    zuko = None

SEED = 0
TRACES = ("exact", "hutchinson")


def build_cnf(dim: int, trace: str, args: argparse.Namespace) -> CNF:
    """A CNF on ``R^dim`` with generic weights: every layer at PyTorch's default init."""
    torch.manual_seed(SEED)
    cnf = CNF(
        dim,
        hidden=args.hidden,
        trace=trace,
        noise="rademacher",
        rtol=args.rtol,
        atol=args.atol,
    )
    cnf.field.linears[-1].reset_parameters()  # the default field starts at zero (identity)
    return cnf


def peak_mib(call: Callable[[], object]) -> float:
    """Peak extra CPU memory held by torch's allocator while ``call()`` runs, in MiB."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak / 2**20


def nll_step(cnf: CNF, x: torch.Tensor) -> Callable[[], None]:
    """A function that evaluates ``mean(|z|²/2 - log_det)`` and back-propagates it."""

    def step() -> None:
        cnf.zero_grad(set_to_none=True)
        z, log_det = cnf(x)
        (0.5 * z.square().sum(dim=1) - log_det).mean().backward()

    return step


def trace_table(args: argparse.Namespace) -> None:
    """Measure and print the exact-versus-Hutchinson table."""
    generator = torch.Generator().manual_seed(SEED)
    rows = []
    for trace in TRACES:
        base: dict[str, float] = {}
        for dim in sorted(args.dims):
            cnf = build_cnf(dim, trace, args)
            x = torch.randn(args.batch, dim, generator=generator)
            with counting_backward_passes() as passes, torch.no_grad():
                cnf(x)
            nfe = cnf.nfe
            with torch.no_grad():
                evaluation = 1000 * median_seconds(lambda: cnf(x), args.repeats, args.warmup)  # noqa: B023
            step = nll_step(cnf, x)
            training = 1000 * median_seconds(step, args.repeats, args.warmup)
            peak = peak_mib(step)
            base.setdefault("eval", evaluation)
            base.setdefault("train", training)
            rows.append(
                (
                    trace,
                    dim,
                    nfe,
                    passes.count / nfe,
                    evaluation,
                    evaluation / base["eval"],
                    training,
                    training / base["train"],
                    peak,
                )
            )
    ratio = f"xD={min(args.dims)}"
    header = (
        f"{'trace':<11} {'D':>4} {'NFE':>5} {'passes/eval':>11} {'eval ms':>9} {ratio:>6} "
        f"{'train ms':>9} {ratio:>6} {'peak MiB':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for trace, dim, nfe, per_eval, evaluation, e_ratio, training, t_ratio, peak in rows:
        print(
            f"{trace:<11} {dim:>4} {nfe:>5} {per_eval:>11.1f} {evaluation:>9.1f} {e_ratio:>6.1f} "
            f"{training:>9.1f} {t_ratio:>6.1f} {peak:>9.1f}"
        )


class CallCounter:
    """A forward hook that counts the calls of a module."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self)

    def __call__(self, *_: object) -> None:
        self.calls += 1


def peer_table(args: argparse.Namespace) -> None:
    """Interleaved training steps of our FFJORD and zuko's CNF (exact=False)."""
    if zuko is None:
        print("\nzuko is not installed: no peer comparison (pip install -e '.[bench]')")
        return
    dim = args.peer_dim
    torch.manual_seed(SEED)
    model = FFJORD(dim, hidden=args.hidden, layers=2, rtol=1e-5, atol=1e-6)
    model.field.linears[-1].reset_parameters()
    ours = Flow(model, StandardNormal(dim))
    torch.manual_seed(SEED)
    peer = zuko.flows.CNF(dim, exact=False, hidden_features=(args.hidden,) * 2)
    x = 2 * torch.randn(args.batch, dim, generator=torch.Generator().manual_seed(1))
    counters = {"nf_course": CallCounter(model.field), "zuko": CallCounter(peer.transform.ode)}
    losses = {
        "nf_course": lambda: ours.forward_kl(x),
        "zuko": lambda: -peer().log_prob(x).mean(),
    }
    optimizers = {
        "nf_course": torch.optim.Adam(ours.parameters(), lr=1e-3),
        "zuko": torch.optim.Adam(peer.parameters(), lr=1e-3),
    }
    times: dict[str, list[float]] = {name: [] for name in losses}
    calls: dict[str, list[int]] = {name: [] for name in losses}
    for round_index in range(args.peer_warmup + args.peer_steps):
        for name, loss_fn in losses.items():
            counters[name].calls = 0
            start = time.perf_counter()
            optimizers[name].zero_grad()
            loss_fn().backward()
            optimizers[name].step()
            if round_index >= args.peer_warmup:
                times[name].append(time.perf_counter() - start)
                calls[name].append(counters[name].calls)
    parameters = {
        "nf_course": sum(p.numel() for p in ours.parameters()),
        "zuko": sum(p.numel() for p in peer.parameters()),
    }
    print(
        f"\npeer: one FFJORD training step, D={dim}, batch {args.batch}, "
        f"median of {args.peer_steps} interleaved steps after {args.peer_warmup} warm-up, "
        f"zuko {metadata.version('zuko')}"
    )
    header = (
        f"{'library':<10} {'params':>7} {'ms/step':>9} {'calls/step':>11} {'ms/call':>8} "
        f"{'ours/peer':>10}"
    )
    print(header)
    print("-" * len(header))
    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    for name in losses:
        per_step = statistics.median(calls[name])
        ratio = medians["nf_course"] / medians[name]
        print(
            f"{name:<10} {parameters[name]:>7} {medians[name]:>9.1f} {per_step:>11.0f} "
            f"{medians[name] / per_step:>8.2f} {ratio:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Time, peak memory, NFE and backward passes of a CNF log-det evaluation with "
        "the exact trace and with Hutchinson's estimator as D grows; optionally one FFJORD "
        "training step against zuko.",
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 8, 32, 128], help="values of D")
    parser.add_argument("--batch", type=int, default=256, help="samples per call (default 256)")
    parser.add_argument("--hidden", type=int, default=64, help="field width (default 64)")
    parser.add_argument("--rtol", type=float, default=1e-5, help="solver rtol (default 1e-5)")
    parser.add_argument("--atol", type=float, default=1e-5, help="solver atol (default 1e-5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument(
        "--peer-steps", type=int, default=20, help="timed peer steps, 0 to skip (default 20)"
    )
    parser.add_argument("--peer-warmup", type=int, default=3, help="untimed peer steps (3)")
    parser.add_argument("--peer-dim", type=int, default=2, help="D of the peer step (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"batch {args.batch}, field 2x{args.hidden} tanh, dopri5 rtol {args.rtol:g} "
        f"atol {args.atol:g}, median of {args.repeats}, {args.threads} threads, "
        f"torch {torch.__version__}, torchdiffeq {metadata.version('torchdiffeq')}"
    )
    trace_table(args)
    if args.peer_steps > 0:
        peer_table(args)


if __name__ == "__main__":
    main()
