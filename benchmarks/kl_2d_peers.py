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
target) with, in brackets, the two-sided p-value of the exact Mann-Whitney U test of ours
against the peer over the seeds (a diverged run ranks last; with five seeds each, no p-value
is below 0.008, and a p-value far above 0.05 says the two medians differ by the luck of the
seeds as far as five seeds can tell); the last column says whether nf_course is at least as
close as every peer by the median and never diverged. ``--summarize LOG ...`` prints these
tables again from the per-run lines of earlier outputs (several invocations' runs gathered in
one table, provided they ran with the same settings; a target that an interrupted invocation
left without some library's runs is named and left out, a library that an output was run
without, ``--libraries``, shows as ``-``; the field-evaluation table needs the
live run). For the continuous flows, a second table gives the calls of the field network per
training step (the forward solve's, and those of zuko's adjoint in the backward pass),
averaged over each tenth of training: they grow as the field stiffens.

Run::

    .venv/bin/python benchmarks/kl_2d_peers.py --help
    .venv/bin/python benchmarks/kl_2d_peers.py                      # everything, 300 s, 5 seeds
    .venv/bin/python benchmarks/kl_2d_peers.py --kinds realnvp --targets checkerboard \
        --budget-seconds 60
    .venv/bin/python benchmarks/kl_2d_peers.py --kinds maf --libraries nf_course nflows \
        --targets rings --budget-seconds 60
    .venv/bin/python benchmarks/kl_2d_peers.py --summarize benchmarks/results/kl_2d_peers_*.txt

Needs the peers: ``pip install -e ".[bench]"`` (a library that is missing is left out).
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import statistics
import warnings
from importlib import metadata
from pathlib import Path

import torch
from kl_2d import LR, score, tenth_means, train
from peers import DEPTH, HIDDEN, KINDS, LIBRARIES, Model, available, build
from scipy.stats import mannwhitneyu

from nf_course.datasets import TOY_DATASETS, toy

DIVERGED_KL = 1.0  # nats
# A per-run line of the output, as ``main`` prints it.
RUN_LINE = re.compile(
    r"^\s+(?P<kind>\w+) (?P<target>\w+) seed (?P<seed>\d+) (?P<library>\w+): "
    r"KL (?P<kl>\S+) after (?P<steps>\d+) steps"
)
# The first line of an output, with the settings of its runs.
SETTINGS_LINE = re.compile(
    r"^budget (?P<common>\S+ CPU s per run, \d+ thread\(s\), lr \S+) \(cosine over the budget\), "
    r"(?:conditioners (?P<sizes>\d+x\d+), )?batch"
)


def run(
    kind: str,
    library: str,
    target_name: str,
    seed: int,
    args: argparse.Namespace,
) -> dict:
    """Train and score one flow (budget, learning rate and conditioner size from ``args``); the
    result's ``kl`` is ``inf`` for a diverged run."""
    model = build(kind, library, hidden=args.hidden, depth=args.depth, seed=seed)
    return train_and_score(model, target_name, seed, args.budget_seconds, args.lr)


def train_and_score(model: Model, target_name: str, seed: int, budget: float, lr: float) -> dict:
    """Train ``model`` on ``target_name`` for ``budget`` CPU seconds from ``lr``, then score it:
    ``kl`` (``inf`` for a diverged run), ``diverged``, ``steps``, ``ms_step`` and ``nfe`` (the
    field calls per step per tenth of training; empty for a flow without a field)."""
    target = toy(target_name)
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


def mann_whitney_p(ours: list[float], peer: list[float]) -> float:
    """Two-sided p-value of the exact Mann-Whitney U test of two samples of KLs (``inf``, a
    diverged run, ranks above every finite KL)."""
    largest = max((k for k in ours + peer if math.isfinite(k)), default=0.0)

    def ranked(kls: list[float]) -> list[float]:
        return [k if math.isfinite(k) else largest + 1.0 for k in kls]

    return float(mannwhitneyu(ranked(ours), ranked(peer), method="exact").pvalue)


def _nats(kl: float) -> str:
    """A KL for the tables: three decimals, or ``>999`` for a diverged run's huge value."""
    return f"{kl:.3f}" if kl < 1000 else ">999"


def _difference(diff: float) -> str:
    """ours - peer for the tables; ``-div.`` when the peer's median run diverged."""
    return f"{diff:+.3f}" if abs(diff) < 1000 else "-div."


def summarize(kind: str, targets: list[str], results: dict) -> None:
    """Print the table of one kind: per target, each library's median, range and divergences,
    and ours - peer with the p-value of the two samples (``-`` for a library not run on a
    target)."""
    libraries = [lib for lib in LIBRARIES if any((kind, t, lib) in results for t in targets)]
    peers = libraries[1:]
    print(f"\n{kind}: KL_pair in nats, median [min, max] over seeds, (d) diverged runs, steps")
    header = f"{'target':<12} " + " ".join(f"{lib:>30}" for lib in libraries)
    header += " " + " ".join(f"{'ours-' + peer + ' (p)':>20}" for peer in peers)
    header += f" {'ours best':>9}"
    print(header)
    print("-" * len(header))
    for target_name in targets:
        cells, kls, clean = [], {}, {}
        for library in libraries:
            runs = results.get((kind, target_name, library))
            if runs is None:
                cells.append("-")
                continue
            kls[library] = [r["kl"] for r in runs]
            clean[library] = not any(r["diverged"] for r in runs)
            diverged = sum(r["diverged"] for r in runs)
            steps = statistics.median(r["steps"] for r in runs)
            median, low, high = (_nats(f(kls[library])) for f in (statistics.median, min, max))
            cells.append(f"{median} [{low}, {high}] ({diverged}) {steps:>6.0f}")
        ours = kls["nf_course"]
        ran = [peer for peer in peers if peer in kls]
        diffs = {peer: statistics.median(ours) - statistics.median(kls[peer]) for peer in ran}
        best = clean["nf_course"] and all(diff <= 0 for diff in diffs.values())
        comparisons = [
            f"{_difference(diffs[peer]):>12} ({mann_whitney_p(ours, kls[peer]):.2f})"
            if peer in kls
            else f"{'-':>20}"
            for peer in peers
        ]
        print(
            f"{target_name:<12} "
            + " ".join(f"{cell:>30}" for cell in cells)
            + " "
            + " ".join(comparisons)
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


def read_runs(logs: list[Path]) -> tuple[dict[tuple[str, str, str], list[dict]], dict]:
    """The runs of earlier outputs, from their per-run lines, keyed like ``main``'s results,
    and the libraries each (kind, target) was run with: those of its kind in its output (an
    output that lacks a library altogether was run without it, ``--libraries``).

    Every run must come from the same settings (budget, threads, learning rate, conditioners:
    each invocation's first line) and appear once (kind, target, library, seed); otherwise the
    tables would pool different experiments, and this stops with a message."""
    results: dict[tuple[str, str, str], list[dict]] = {}
    planned: dict[tuple[str, str], set[str]] = {}
    seen: set[tuple[str, str, str, int]] = set()
    settings: set[str] = set()
    for log in logs:
        in_log: dict[str, set[str]] = {}  # the libraries of each kind in this output
        targets_in_log: dict[str, set[str]] = {}
        for line in log.read_text().splitlines():
            header = SETTINGS_LINE.match(line)
            if header is not None:
                # Outputs from before the --hidden and --depth options name no conditioners.
                settings.add(f"{header['common']}, conditioners {header['sizes'] or '2x64'}")
                continue
            match = RUN_LINE.match(line)
            if match is None:
                continue
            key = (match["kind"], match["target"], match["library"])
            if (*key, int(match["seed"])) in seen:
                raise SystemExit(f"{log}: {' '.join(key)} seed {match['seed']} appears twice")
            seen.add((*key, int(match["seed"])))
            kl = float(match["kl"])
            run = {"kl": kl, "diverged": not kl < DIVERGED_KL, "steps": int(match["steps"])}
            results.setdefault(key, []).append({**run, "nfe": []})
            in_log.setdefault(match["kind"], set()).add(match["library"])
            targets_in_log.setdefault(match["kind"], set()).add(match["target"])
        for kind, targets in targets_in_log.items():
            for target_name in targets:
                planned.setdefault((kind, target_name), set()).update(in_log[kind])
    if len(settings) != 1:
        raise SystemExit(f"the outputs must share one setting, found: {sorted(settings)}")
    return results, planned


def print_summaries(
    results: dict[tuple[str, str, str], list[dict]], planned: dict[tuple[str, str], set[str]]
) -> None:
    """The tables of every kind in ``results``, targets in the order of ``TOY_DATASETS``;
    ``planned`` holds the libraries each (kind, target) was run with."""
    for kind in dict.fromkeys(key[0] for key in results):
        libraries = {key[2] for key in results if key[0] == kind}
        if "nf_course" not in libraries:
            raise SystemExit(f"no nf_course run of {kind} to compare the peers with")
        # A target that an interrupted invocation left without every library's runs is no row.
        run = [t for t in TOY_DATASETS if (kind, t) in planned]
        targets = [
            t
            for t in run
            if all((kind, t, lib) in results for lib in planned[kind, t] | {"nf_course"})
        ]
        summarize(kind, targets, results)
        if len(targets) < len(run):
            left_out = ", ".join(t for t in run if t not in targets)
            print(f"left out, not run with every library: {left_out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--summarize",
        nargs="+",
        type=Path,
        metavar="LOG",
        help="train nothing: print the tables from the per-run lines of these earlier outputs",
    )
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
    parser.add_argument(
        "--libraries",
        nargs="+",
        choices=LIBRARIES,
        default=list(LIBRARIES),
        help="those to train, of the installed ones that have the kind (default: all)",
    )
    args = parser.parse_args()
    if args.summarize:
        print_summaries(*read_runs(args.summarize))
        return
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
    planned: dict[tuple[str, str], set[str]] = {}
    for kind, target_name in itertools.product(args.kinds, args.targets):
        planned[kind, target_name] = {lib for lib in available(kind) if lib in args.libraries}
        for seed in args.seeds:
            for library in [lib for lib in available(kind) if lib in args.libraries]:
                result = run(kind, library, target_name, seed, args)
                results.setdefault((kind, target_name, library), []).append(result)
                flag = " DIVERGED" if result["diverged"] else ""
                print(
                    f"  {kind} {target_name} seed {seed} {library}: KL {result['kl']:.4f} after "
                    f"{result['steps']} steps ({result['ms_step']:.1f} ms/step){flag}",
                    flush=True,
                )
    print_summaries(results, planned)


if __name__ == "__main__":
    main()
