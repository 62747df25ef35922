r"""KL(π ‖ p_θ) of each nf_course flow and of the same flow built with pyro, zuko and nflows,
trained in one run on equal CPU budgets and scored alike, over several seeds.

What it does. For each kind of flow in ``--kinds`` (``peers.py`` says how each library builds
it: same number of layers, same conditioner widths and activations), each 2D target in
``--targets`` and each seed in ``--seeds``, it trains the nf_course flow and then the peers'
flows back to back, each a fresh flow initialized from that seed, with the very same
procedure: :func:`nf_course.training.fit` (the peers through the adapter ``peers.Model``) by
maximum likelihood on the same stream of fresh samples (batch 1024, drawn from a generator
seeded with the seed), Adam at ``--lr`` with cosine decay over a budget of
``--budget-seconds`` CPU seconds (:func:`time.process_time`, so the schedule decays fully in
every run whatever a step costs), ``--threads`` torch threads. Each trained flow is scored on
the same 20 000 held-out samples by ``KL_pair = mean(log π - log p_θ)`` (nats; the exact
density for the continuous flows, which train with Hutchinson's estimate).

Divergence. A run diverges when its loss becomes non-finite (``fit`` raises), when its score
is not finite, or when its KL is above ``DIVERGED_KL`` = 1 nat (a flow that fits at all is
far below that on every target after a few CPU-seconds; a standard normal is above it).

Output. One line per run as it goes; then, per kind and target, for each library the median
KL over the seeds, the smallest and largest, the number of diverged runs and the median steps
done; ``ours - peer`` is nf_course's median minus the peer's (negative: ours is closer to the
target), and the last column says whether nf_course is at least as close as every peer and
never diverged. For the continuous flows, a second table gives the calls of the field network
per training step (the forward solve's, and those of zuko's adjoint in the backward pass),
averaged over each tenth of training: they grow as the field stiffens.

Run::

    .venv/bin/python benchmarks/kl_2d_peers.py --help
    .venv/bin/python benchmarks/kl_2d_peers.py                      # everything, 300 s, 5 seeds
    .venv/bin/python benchmarks/kl_2d_peers.py --kinds realnvp --targets checkerboard \
        --budget-seconds 60

Needs the peers: ``pip install -e ".[bench]"`` (a library that is missing is left out).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import warnings
from importlib import metadata

import torch
from kl_2d import LR, score, tenth_means, train
from peers import DEPTH, HIDDEN, KINDS, available, build

from nf_course.datasets import TOY_DATASETS, toy

DIVERGED_KL = 1.0  # nats


def run(
    kind: str,
    library: str,
    target_name: str,
    seed: int,
    args: argparse.Namespace,
) -> dict:
    """Train and score one flow (budget, learning rate and conditioner size from ``args``); the
    result's ``kl`` is ``inf`` for a diverged run."""
    target = toy(target_name)
    model = build(kind, library, hidden=args.hidden, depth=args.depth, seed=seed)
    budget, lr = args.budget_seconds, args.lr
    calls_per_step: list[int] = []

    def count_calls(step: int, history) -> None:
        calls_per_step.append(model.field_calls)
        model.field_calls = 0

    try:
        history = train(model, target.sample, budget, lr=lr, seed=seed, callback=count_calls)
    except FloatingPointError:
        return {"kl": math.inf, "diverged": True, "steps": 0, "ms_step": math.nan, "nfe": []}
    model.prepare_scoring()
    kl = score(model.log_prob, target)["kl_pair"]
    steps = len(history.steps)
    return {
        "kl": kl if math.isfinite(kl) else math.inf,
        "diverged": not kl < DIVERGED_KL,
        "steps": steps,
        "ms_step": 1000 * history.cpu_time / steps,
        "nfe": tenth_means(calls_per_step) if any(calls_per_step) else [],
    }


def summarize(kind: str, targets: list[str], results: dict) -> None:
    """Print the table of one kind: per target, each library's median, range and divergences."""
    libraries = available(kind)
    peers = libraries[1:]
    print(f"\n{kind}: KL_pair in nats, median [min, max] over seeds, (d) diverged runs, steps")
    header = f"{'target':<12} " + " ".join(f"{lib:>30}" for lib in libraries)
    header += " " + " ".join(f"{'ours-' + peer:>12}" for peer in peers) + f" {'ours best':>9}"
    print(header)
    print("-" * len(header))
    for target_name in targets:
        cells, medians, clean = [], {}, {}
        for library in libraries:
            runs = results[kind, target_name, library]
            kls = [r["kl"] for r in runs]
            medians[library] = statistics.median(kls)
            clean[library] = not any(r["diverged"] for r in runs)
            diverged = sum(r["diverged"] for r in runs)
            steps = statistics.median(r["steps"] for r in runs)
            spread = f"[{min(kls):.3f}, {max(kls):.3f}]"
            cells.append(f"{medians[library]:.3f} {spread} ({diverged}) {steps:>6.0f}")
        ours = medians["nf_course"]
        diffs = [ours - medians[peer] for peer in peers]
        best = clean["nf_course"] and all(diff <= 0 for diff in diffs)
        print(
            f"{target_name:<12} "
            + " ".join(f"{cell:>30}" for cell in cells)
            + " "
            + " ".join(f"{diff:>+12.3f}" for diff in diffs)
            + f" {'yes' if best else 'no':>9}"
        )
    ode_runs = {key: runs for key, runs in results.items() if key[0] == kind and runs[0]["nfe"]}
    if ode_runs:
        print(f"\n{kind}: field evaluations per training step (forward and backward), mean over")
        print("each tenth of training, median over seeds")
        print(
            f"{'target':<12} {'library':<10} " + " ".join(f"{f'{k}/10':>6}" for k in range(1, 11))
        )
        for (_, target_name, library), runs in ode_runs.items():
            tenths = [statistics.median(r["nfe"][k] for r in runs if r["nfe"]) for k in range(10)]
            print(f"{target_name:<12} {library:<10} " + " ".join(f"{v:>6.1f}" for v in tenths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--targets", nargs="+", choices=list(TOY_DATASETS), default=list(TOY_DATASETS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--budget-seconds", type=float, default=300.0, help="CPU seconds per run (default 300)"
    )
    parser.add_argument("--lr", type=float, default=LR, help=f"initial learning rate ({LR:g})")
    parser.add_argument(
        "--hidden", type=int, default=HIDDEN, help=f"conditioner width, every library ({HIDDEN})"
    )
    parser.add_argument(
        "--depth", type=int, default=DEPTH, help=f"conditioner hidden layers ({DEPTH})"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # nflows warns at every call of a fresh spline coupling; the message is no result.
    warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled down")
    versions = ", ".join(
        f"{lib} {metadata.version('pyro-ppl' if lib == 'pyro' else lib)}"
        for lib in available("realnvp")
    )
    print(
        f"budget {args.budget_seconds:g} CPU s per run, {args.threads} thread(s), lr {args.lr:g} "
        f"(cosine over the budget), conditioners {args.depth}x{args.hidden}, "
        f"batch 1024, seeds {args.seeds}, libraries {versions}, "
        f"torch {torch.__version__}",
        flush=True,
    )
    results: dict[tuple[str, str, str], list[dict]] = {}
    for kind, target_name in itertools.product(args.kinds, args.targets):
        for seed in args.seeds:
            for library in available(kind):
                result = run(kind, library, target_name, seed, args)
                results.setdefault((kind, target_name, library), []).append(result)
                flag = " DIVERGED" if result["diverged"] else ""
                print(
                    f"  {kind} {target_name} seed {seed} {library}: KL {result['kl']:.4f} after "
                    f"{result['steps']} steps ({result['ms_step']:.1f} ms/step){flag}",
                    flush=True,
                )
    for kind in args.kinds:
        summarize(kind, args.targets, results)


if __name__ == "__main__":
    main()
