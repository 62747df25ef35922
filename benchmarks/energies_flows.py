r"""Reverse KL to the energies U1-U4 reached by the reference flows other than planar.

What it does. For each flow in ``--flows`` (built as ``kl_2d.build_flow`` builds it: 8 spline
couplings, 8 affine couplings, ...) and each energy of :mod:`nf_course.targets` (U1-U4 of
Rezende and Mohamed 2015, restricted to the box [-4, 4]² by a smooth wall), it fits a fresh
flow by the reverse KL (:func:`nf_course.training.fit` with ``log_target``: Adam at ``--lr``
with cosine decay over ``--budget-seconds`` CPU seconds, batch ``--batch-size`` of fresh flow
samples, float32) for each seed in ``--seeds``, then estimates

    KL(q ‖ π) = E_q[log q + U + E] + log Z

from ``--eval-samples`` samples (seed 5) with its standard error, as
``planar_energies.py`` does for the planar flows. The design document's target: the best
reference flow within 0.01 nats of zero on every energy.

Run::

    .venv/bin/python benchmarks/energies_flows.py --help
    .venv/bin/python benchmarks/energies_flows.py --flows spline --budget-seconds 300
"""

from __future__ import annotations

import argparse
import statistics

import torch
from kl_2d import FLOWS, build_flow

from nf_course.pretrained import ENERGY_NAMES
from nf_course.targets import get_energy_target, reverse_kl_estimate
from nf_course.training import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=["spline"])
    parser.add_argument("--targets", nargs="+", choices=ENERGY_NAMES, default=list(ENERGY_NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget-seconds", type=float, default=300.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"budget {args.budget_seconds:g} CPU s per fit, batch {args.batch_size}, lr {args.lr:g} "
        f"(cosine over the budget), {args.threads} thread(s), KL from {args.eval_samples} "
        f"samples, torch {torch.__version__}",
        flush=True,
    )
    header = f"{'flow':<8} {'target':<6} {'seed':>4} {'steps':>6} {'CPU s':>6} {'KL':>7} {'±se':>6}"
    rows, best = [], {}
    for flow_name in args.flows:
        for name in args.targets:
            target = get_energy_target(name)
            for seed in args.seeds:
                flow = build_flow(flow_name, seed=seed)
                history = fit(
                    flow,
                    log_target=target.log_prob_unnormalized,
                    cpu_seconds=args.budget_seconds,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=seed,
                    progress=False,
                )
                flow.eval()
                kl = reverse_kl_estimate(
                    flow, target, args.eval_samples, generator=torch.Generator().manual_seed(5)
                )
                best.setdefault((flow_name, name), []).append(kl.value)
                rows.append(
                    f"{flow_name:<8} {name:<6} {seed:>4} {len(history.steps):>6} "
                    f"{history.cpu_time:>6.0f} {kl.value:>7.4f} {kl.stderr:>6.4f}"
                )
                print(f"  done {rows[-1]}", flush=True)
    print()
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print("\nmedian KL over seeds; within 0.01 nats?")
    for (flow_name, name), values in best.items():
        median = statistics.median(values)
        print(f"{flow_name:<8} {name:<6} {median:>7.4f}  {'yes' if median <= 0.01 else 'no'}")


if __name__ == "__main__":
    main()
