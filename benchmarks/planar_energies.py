r"""Reverse KL of planar flows fitted to the energies U1-U4, and the checkpoints of chapter 5.

What it does. For each energy target of :mod:`nf_course.targets` (U1-U4 of Rezende and Mohamed
2015, restricted to the box [-4, 4]² by a smooth wall) and each depth ``K``, it fits a fresh
:func:`nf_course.pretrained.planar_flow` with ``K`` layers by the reverse KL
(:func:`nf_course.training.fit` with ``log_target``: Adam, cosine learning-rate decay, batch
``--batch-size`` of fresh flow samples, seed 0, float32), then estimates

    KL(q ‖ π) = E_q[log q + U + E] + log Z

with ``--eval-samples`` samples (seed 5) and its standard error. The design document's targets:
``K = 32`` within 0.05 nats of zero on every target, the best reference flow within 0.01.

Steps. ``--steps`` gives one step count per depth (default 5 000, 10 000 and 20 000 for
``K = 2, 8, 32``); a fit of ``K = 32`` then takes about 6 CPU-minutes on one thread. The
shipped U3 and U4 fits at ``K = 32`` ran 50 000 steps (``--steps 50000``): at 20 000 they were
still at 0.08 and 0.10 nats. Rezende and Mohamed trained for 500 000 updates.

``--save`` writes each fitted flow's ``state_dict`` to
``nf_course/checkpoints/planar_<target>_K<K>.pt`` and prints its SHA-256, for
:data:`nf_course.pretrained.CHECKPOINTS` (chapter 5 loads these files).

Run::

    .venv/bin/python benchmarks/planar_energies.py --help
    .venv/bin/python benchmarks/planar_energies.py --targets U1 --layers 32
    .venv/bin/python benchmarks/planar_energies.py --save          # all 12 fits, ~35 CPU-minutes
"""

from __future__ import annotations

import argparse
import time

import torch

from nf_course.pretrained import ENERGY_NAMES, PLANAR_DEPTHS, planar_flow, save_checkpoint
from nf_course.targets import get_energy_target, reverse_kl_estimate
from nf_course.training import fit

DEFAULT_STEPS = {2: 5_000, 8: 10_000, 32: 20_000}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Reverse KL of planar flows fitted to U1-U4; --save writes chapter 5's "
        "checkpoints."
    )
    parser.add_argument("--targets", nargs="+", choices=ENERGY_NAMES, default=list(ENERGY_NAMES))
    parser.add_argument(
        "--layers", nargs="+", type=int, choices=PLANAR_DEPTHS, default=list(PLANAR_DEPTHS)
    )
    parser.add_argument(
        "--steps",
        nargs="+",
        type=int,
        help="training steps for each of --layers, in the same order "
        "(default 5000, 10000, 20000 for K = 2, 8, 32)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--eval-samples", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--save", action="store_true", help="write the checkpoints")
    args = parser.parse_args()
    if args.steps is None:
        steps = {K: DEFAULT_STEPS[K] for K in args.layers}
    elif len(args.steps) == len(args.layers):
        steps = dict(zip(args.layers, args.steps, strict=True))
    else:
        parser.error("--steps needs one count per --layers value")
    torch.set_num_threads(args.threads)
    print(
        f"batch {args.batch_size}, lr {args.lr:g} (cosine), {args.threads} threads, "
        f"KL from {args.eval_samples} samples, torch {torch.__version__}",
        flush=True,
    )
    header = f"{'target':<6} {'K':>3} {'steps':>6} {'CPU s':>6} {'KL':>7} {'±se':>6}  sha256"
    rows = []
    for name in args.targets:
        target = get_energy_target(name)
        for K in args.layers:
            flow = planar_flow(K)
            start = time.process_time()
            fit(
                flow,
                log_target=target.log_prob_unnormalized,
                steps=steps[K],
                batch_size=args.batch_size,
                lr=args.lr,
                seed=0,
                progress=False,
            )
            seconds = time.process_time() - start
            flow.eval()
            kl = reverse_kl_estimate(
                flow, target, args.eval_samples, generator=torch.Generator().manual_seed(5)
            )
            digest = "-"
            if args.save:
                digest = save_checkpoint(flow, f"planar_{name}_K{K}.pt")
            rows.append(
                f"{name:<6} {K:>3} {steps[K]:>6} {seconds:>6.0f} {kl.value:>7.4f} "
                f"{kl.stderr:>6.4f}  {digest}"
            )
            print(f"  done {rows[-1]}", flush=True)
    print()
    print(header)
    print("-" * len(header))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
