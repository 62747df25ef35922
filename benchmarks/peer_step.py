r"""One training step of the same architecture in nf_course, pyro, zuko and nflows, side by side.

What it measures. For each architecture in ``--archs`` it builds the flow in nf_course and in
the peers that are installed (``pip install -e .[bench]``), as ``peers.py`` builds them, on
``R^D`` with ``--dim`` (default 2, the toy targets), and times one maximum-likelihood training
step on the same fixed batch of ``--batch`` standard-normal-times-two samples: ``zero_grad``,
mean negative log-likelihood, ``backward``, ``Adam.step``. The steps of the libraries are
interleaved (one step of each in turn, ``--steps`` rounds after ``--warmup`` untimed ones), so
that load from other processes hits them alike, and each library's median time per step is
reported with the ratio ``ours / peer`` (below 1: nf_course is faster).

Architectures: ``peers.py`` (8 layers, conditioners with two hidden layers of 64 units and
SiLU activations in every library, Adam at lr 1e-3). What each library does inside a layer
(how it parametrizes the scale, the spline's minimum bin size and slope, zuko's lazy
re-building of the distribution at each call, pyro's sequential inverse for MAF's density) is
part of what is measured; the parameter counts are printed so that the sizes can be compared.

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
from peers import HIDDEN, LAYERS, available, build
from torch import nn

LR = 1e-3
SEED = 0

ARCHS = ("maf", "realnvp", "spline")


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
        "in nf_course, pyro, zuko and nflows, interleaved in one run; ratio ours/peer.",
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
    versions = [f"torch {torch.__version__}"] + [
        f"{lib} {metadata.version('pyro-ppl' if lib == 'pyro' else lib)}"
        for lib in available("realnvp")[1:]
    ]
    print(
        f"D={args.dim}, batch {args.batch}, {LAYERS} layers, MLP 2x{HIDDEN} SiLU, median of "
        f"{args.steps} interleaved steps, {args.threads} threads; {', '.join(versions)}"
    )
    x = 2 * torch.randn(args.batch, args.dim, generator=torch.Generator().manual_seed(SEED))
    rows = []
    for arch in args.archs:
        libs = {lib: build(arch, lib, args.dim, seed=SEED) for lib in available(arch)}
        steps = {name: step_fn(model, model.log_prob, x) for name, model in libs.items()}
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
        for name, module in libs.items():
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
