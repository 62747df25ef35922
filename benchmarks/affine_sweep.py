r"""A small sweep of the affine flows' size and learning rate on the hardest 2D targets.

What it does. For each flow in ``--flows`` (``realnvp``: 8 affine couplings, ``maf``: 8 MAF
layers, built by ``kl_2d.build_flow``), each conditioner size ``--hidden`` × ``--depth``
(width × hidden layers), each initial learning rate ``--lrs``, each target in ``--targets``
and each seed in ``--seeds``, it trains a fresh flow exactly as ``kl_2d.py`` does (forward KL
on fresh samples, batch 1024, Adam, cosine decay over a CPU-time budget of
``--budget-seconds``, one thread) and scores ``KL_pair = mean(log π - log p_θ)`` on 20 000
held-out samples. It prints one line per run as it goes, then per configuration the median
KL over seeds for each target and the median over targets of those medians, best first.
A run whose loss becomes non-finite is reported as diverged (KL ``inf``).

The package defaults of the affine flows (width, depth of the conditioners, and the
learning rate the chapters and benchmarks train with) are chosen from this sweep; the
appendix records the run.

Run::

    .venv/bin/python benchmarks/affine_sweep.py --help
    .venv/bin/python benchmarks/affine_sweep.py --budget-seconds 60 --seeds 0 1
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics

import torch
from kl_2d import build_flow, score, train

from nf_course.datasets import TOY_DATASETS, toy


def run(
    flow_name: str, hidden: int, depth: int, lr: float, target_name: str, seed: int, budget: float
) -> tuple[float, int]:
    """``(KL_pair, steps)`` of one training run; ``(inf, steps)`` if it diverged."""
    target = toy(target_name)
    flow = build_flow(flow_name, hidden=hidden, depth=depth, seed=seed)
    try:
        history = train(flow, target.sample, budget, lr=lr, seed=seed)
    except FloatingPointError:
        return math.inf, 0
    flow.eval()
    kl = score(flow.log_prob, target)["kl_pair"]
    return (kl if math.isfinite(kl) else math.inf), len(history.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", nargs="+", choices=("realnvp", "maf"), default=["realnvp"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--depth", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 2e-3, 5e-3])
    parser.add_argument(
        "--targets", nargs="+", choices=list(TOY_DATASETS), default=["checkerboard", "rings"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budget-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"budget {args.budget_seconds:g} CPU s per run, {args.threads} thread(s), seeds "
        f"{args.seeds}, torch {torch.__version__}",
        flush=True,
    )
    grid = list(itertools.product(args.flows, args.hidden, args.depth, args.lrs))
    results: dict[tuple, dict[str, list[float]]] = {config: {} for config in grid}
    for target_name, seed in itertools.product(args.targets, args.seeds):
        for config in grid:
            kl, steps = run(*config, target_name, seed, args.budget_seconds)
            results[config].setdefault(target_name, []).append(kl)
            flow_name, hidden, depth, lr = config
            print(
                f"  {flow_name} {depth}x{hidden} lr {lr:g} {target_name} seed {seed}: "
                f"KL {kl:.4f} after {steps} steps",
                flush=True,
            )
    rows = []
    for config, by_target in results.items():
        medians = [statistics.median(by_target[name]) for name in args.targets]
        rows.append((statistics.median(medians), config, medians))
    rows.sort(key=lambda row: row[0])
    print()
    header = f"{'flow':<8} {'MLP':>6} {'lr':>7} " + " ".join(f"{t:>12}" for t in args.targets)
    print(header + f" {'median':>8}")
    print("-" * (len(header) + 9))
    for overall, (flow_name, hidden, depth, lr), medians in rows:
        cells = " ".join(f"{m:>12.4f}" for m in medians)
        print(f"{flow_name:<8} {f'{depth}x{hidden}':>6} {lr:>7g} {cells} {overall:>8.4f}")


if __name__ == "__main__":
    main()
