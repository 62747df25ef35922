r"""KL(π ‖ p_θ) of the reference flows on the seven 2D targets after a fixed CPU-time budget.

What it does. For each flow (RealNVP = a stack of affine couplings, MAF, a stack of spline
couplings, a Glow-style stack of ActNorm → LU-parametrized linear map → affine coupling, a
stack of ActNorm → i-ResNet blocks with the exact 2D log-det, and FFJORD trained with the
Hutchinson estimator and scored with the exact trace) and each 2D target of
:func:`nf_course.datasets.toy`, it trains a fresh flow with
:func:`nf_course.training.fit` (maximum likelihood on fresh samples of the target, AdamW with no
weight decay, i.e. Adam, cosine learning-rate decay, batch 1024, seed 0) for
``--budget-seconds`` of CPU time of this process, then scores it on 20 000 held-out samples
(seed 1).

Budget and schedule. :func:`~nf_course.training.fit` trains for ``--budget-seconds`` of CPU
time (:func:`time.process_time`, all threads of the process) rather than wall-clock time, so
that other programs on the machine do not shorten a run: with ``--threads 1`` (the default) a
budget of 300 s is five minutes of one core, half of the design document's "5 minutes on 2 CPU
cores" (the tensors are small and a second thread gains little here). The cosine schedule
follows the fraction of the budget spent, so the learning rate reaches zero when the budget
does, even when the cost of a step changes during training (FFJORD's adaptive solver).

Columns.

* ``steps``, ``lr end`` (the last step's learning rate over the initial one: near 0 when the
  cosine schedule ran to its end), ``seconds`` (CPU seconds of training), ``ms/step``.
* ``NFE``: FFJORD's number of field evaluations per training step, averaged over the first and
  over the last tenth of training (``first→last``; ``-`` for the other flows). A second table
  gives that average for each tenth of training: the field stiffens as it fits the target, so
  the adaptive solver takes more steps.
* ``NLL``: mean ``-log p_θ(x)`` on the test samples, in nats; ``H``: the target's entropy
  (:attr:`nf_course.datasets.Toy2D.entropy`, the design document's rounded value).
* ``KL = NLL - H`` and its standard error ``std(-log p_θ) / sqrt(n)`` (H is a constant).
* ``KL_pair``: the same divergence estimated per sample, ``mean(log π(x) - log p_θ(x))``, with
  its standard error: it uses the true density, so it does not carry the rounding of H
  (up to 0.005 nats) and its variance is much smaller once the fit is good.

Run::

    .venv/bin/python benchmarks/kl_2d.py --help
    .venv/bin/python benchmarks/kl_2d.py                       # 4 flows x 7 targets x 300 s
    .venv/bin/python benchmarks/kl_2d.py --budget-seconds 20 --flows realnvp --targets moons
    .venv/bin/python benchmarks/kl_2d.py --flows spline --targets rings --bins 16 --seeds 0 1

``--hidden``, ``--depth`` and ``--bins`` change the conditioners and the splines of every flow
in the run (the defaults are the package's); ``--seeds`` repeats each run with other seeds
(initial parameters and sample stream; the test samples stay the same).

The design document's target: the best flow within 0.02 nats of the floor (KL = 0) on every
target in at most 5 CPU-minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import math

import torch

from nf_course.bijectors import (
    CNF,
    FFJORD,
    MAF,
    ActNorm,
    AffineCoupling,
    InvertibleResidual,
    LinearLU,
    SplineCoupling,
)
from nf_course.core import Compose, Flow, StandardNormal
from nf_course.datasets import TOY_DATASETS, toy
from nf_course.training import fit

# Architecture sizes. Eight layers each, as in the design document's pyro peer; conditioners
# are MLPs with two hidden layers of 64 units (SiLU), the package defaults.
LAYERS = 8  # coupling or autoregressive layers per flow
HIDDEN = 64  # width of each conditioner's hidden layers
DEPTH = 2  # hidden layers per conditioner
SPLINE_BINS = 8  # rational-quadratic spline bins
SPLINE_BOUND = 5.0  # spline interval [-B, B]; the targets live in about [-4, 4]^2

# Training and evaluation.
BATCH_SIZE = 1024
LR = 1e-3
SEED = 0
TEST_SEED = 1
TEST_SAMPLES = 20_000

FLOWS = ("realnvp", "maf", "spline", "glow", "iresnet", "ffjord")


def build_flow(
    name: str,
    dim: int = 2,
    *,
    hidden: int = HIDDEN,
    depth: int = DEPTH,
    bins: int = SPLINE_BINS,
    seed: int = SEED,
) -> Flow:
    """A fresh flow ``name`` (one of :data:`FLOWS`) on ``R^dim`` whose conditioners have
    ``depth`` hidden layers of ``hidden`` units (and whose splines have ``bins`` bins),
    initialized from ``seed``."""
    torch.manual_seed(seed)
    if name == "realnvp":
        layers = [
            AffineCoupling(dim, hidden=hidden, layers=depth, parity=i % 2) for i in range(LAYERS)
        ]
    elif name == "maf":
        orders = ("natural", "reversed")
        layers = [
            MAF(dim, hidden=(hidden,) * depth, order=orders[i % 2], seed=i) for i in range(LAYERS)
        ]
    elif name == "spline":
        layers = [
            SplineCoupling(
                dim,
                bins=bins,
                bound=SPLINE_BOUND,
                hidden=hidden,
                layers=depth,
                parity=i % 2,
            )
            for i in range(LAYERS)
        ]
    elif name == "glow":
        layers = []
        for i in range(LAYERS):
            layers += [
                ActNorm(dim),
                LinearLU(dim, seed=i),
                AffineCoupling(dim, hidden=hidden, layers=depth, parity=i % 2),
            ]
    elif name == "iresnet":
        layers = []
        for i in range(LAYERS):
            layers += [
                ActNorm(dim),
                InvertibleResidual(
                    dim, hidden=hidden, layers=depth, log_det="exact", n_power_iterations=2, seed=i
                ),
            ]
    elif name == "ffjord":
        layers = [FFJORD(dim, hidden=hidden, layers=depth)]
    else:
        raise ValueError(f"unknown flow {name!r}; choose from {', '.join(FLOWS)}")
    return Flow(Compose(*layers), StandardNormal(dim))


def train(flow, sampler, budget: float, *, lr: float = LR, seed: int = SEED, **options):
    """:func:`~nf_course.training.fit` for ``budget`` CPU seconds with this benchmark's batch
    size; ``flow`` is a :class:`~nf_course.core.Flow` or any module with its ``forward_kl``."""
    return fit(
        flow,
        data=sampler,
        cpu_seconds=budget,
        batch_size=BATCH_SIZE,
        lr=lr,
        seed=seed,
        progress=False,
        **options,
    )


def score(log_prob, target) -> dict[str, float]:
    """KL(π ‖ p_θ) of a trained model with log-density ``log_prob`` on 20 000 held-out samples
    of ``target``: ``nll``, ``kl = nll - H`` and ``kl_pair = mean(log π - log p_θ)``, each
    with its standard error (``kl_se``, ``kl_pair_se``)."""
    x = target.sample(TEST_SAMPLES, generator=torch.Generator().manual_seed(TEST_SEED))
    with torch.no_grad():
        log_q = torch.cat([log_prob(chunk) for chunk in x.split(4096)]).double()
        log_p = target.log_prob(x).double()
    n = x.shape[0]
    nll = -log_q.mean().item()
    pair = log_p - log_q
    return {
        "nll": nll,
        "kl": nll - target.entropy,
        "kl_se": log_q.std().item() / math.sqrt(n),
        "kl_pair": pair.mean().item(),
        "kl_pair_se": pair.std().item() / math.sqrt(n),
    }


def tenth_means(values: list[int]) -> list[float]:
    """Mean of ``values`` over each tenth of the list (empty when fewer than ten values)."""
    if len(values) < 10:
        return []
    edges = [round(i * len(values) / 10) for i in range(11)]
    return [sum(values[a:b]) / (b - a) for a, b in itertools.pairwise(edges)]


def nfe_summary(by_tenth: list[float]) -> str:
    """``first→last`` tenth's mean NFE, or ``-`` for a flow without an ODE."""
    return f"{by_tenth[0]:.0f}→{by_tenth[-1]:.0f}" if by_tenth else "-"


def run_one(
    flow_name: str,
    target_name: str,
    budget: float,
    lr: float = LR,
    *,
    seed: int = SEED,
    **sizes: int,
) -> dict[str, object]:
    """Train one flow on one target for ``budget`` CPU seconds from learning rate ``lr`` and
    score it; ``seed`` draws the initial parameters and the sample stream, ``sizes`` go to
    :func:`build_flow` (``hidden``, ``depth``, ``bins``)."""
    target = toy(target_name)
    flow = build_flow(flow_name, seed=seed, **sizes)
    cnfs = [module for module in flow.modules() if isinstance(module, CNF)]
    nfe_per_step: list[int] = []

    def record_nfe(step: int, history) -> None:
        if cnfs:
            nfe_per_step.append(cnfs[0].nfe)

    history = train(flow, target.sample, budget, lr=lr, seed=seed, callback=record_nfe)
    seconds = history.cpu_time
    done = len(history.steps)

    for cnf in cnfs:
        cnf.trace = "exact"  # score with the exact density, not Hutchinson's estimate
    flow.eval()
    return {
        "flow": flow_name,
        "target": target_name,
        "seed": seed,
        "steps": done,
        "lr_end": history.lrs[-1] / lr,
        "seconds": seconds,
        "ms_step": 1000 * seconds / max(done, 1),
        "nfe_by_tenth": tenth_means(nfe_per_step),
        "H": target.entropy,
        **score(flow.log_prob, target),
    }


def print_table(rows: list[dict[str, object]]) -> None:
    """Plain-text table of the results."""
    header = (
        f"{'flow':<8} {'target':<12} {'seed':>4} {'steps':>6} {'lr end':>7} {'seconds':>7} "
        f"{'ms/step':>7} {'NFE':>7} {'NLL':>7} {'H':>6} {'KL':>7} {'±se':>6} "
        f"{'KL_pair':>7} {'±se':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['flow']:<8} {r['target']:<12} {r['seed']:>4} {r['steps']:>6} {r['lr_end']:>7.1e} "
            f"{r['seconds']:>7.1f} {r['ms_step']:>7.2f} {nfe_summary(r['nfe_by_tenth']):>7} "
            f"{r['nll']:>7.3f} "
            f"{r['H']:>6.3f} "
            f"{r['kl']:>7.3f} {r['kl_se']:>6.3f} {r['kl_pair']:>7.3f} {r['kl_pair_se']:>6.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="KL(π‖p_θ) = test NLL - H(π) of RealNVP, MAF, spline-coupling and Glow-style "
        "flows on the 2D toy targets after a fixed CPU-time training budget.",
    )
    parser.add_argument(
        "--flows", nargs="+", choices=FLOWS, default=list(FLOWS), help="flows to train"
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=list(TOY_DATASETS),
        default=list(TOY_DATASETS),
        help="2D targets",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=300.0,
        help="CPU seconds of training per flow and target (default 300)",
    )
    parser.add_argument("--lr", type=float, default=LR, help=f"initial learning rate ({LR:g})")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help=f"conditioner width ({HIDDEN})")
    parser.add_argument(
        "--depth", type=int, default=DEPTH, help=f"conditioner hidden layers ({DEPTH})"
    )
    parser.add_argument(
        "--bins", type=int, default=SPLINE_BINS, help=f"spline bins ({SPLINE_BINS})"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[SEED], help=f"seeds ({SEED})")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args()
    sizes = {"hidden": args.hidden, "depth": args.depth, "bins": args.bins}
    torch.set_num_threads(args.threads)
    print(
        f"budget {args.budget_seconds:g} CPU s per run, {args.threads} threads, "
        f"batch {BATCH_SIZE}, "
        f"lr {args.lr:g} (cosine), {LAYERS} layers x MLP {args.depth}x{args.hidden}, "
        f"{args.bins} spline bins, seeds {args.seeds}, test n={TEST_SAMPLES}, "
        f"torch {torch.__version__}",
        flush=True,
    )
    rows = []
    for flow_name, target_name, seed in itertools.product(args.flows, args.targets, args.seeds):
        row = run_one(flow_name, target_name, args.budget_seconds, args.lr, seed=seed, **sizes)
        rows.append(row)
        print(
            f"  done {flow_name} {target_name} seed {seed}: KL {row['kl']:.3f} "
            f"(pair {row['kl_pair']:.3f}) after {row['steps']} steps",
            flush=True,
        )
    print()
    print_table(rows)
    ode_rows = [r for r in rows if r["nfe_by_tenth"]]
    if ode_rows:
        print("\nNFE per training step, mean over each tenth of training")
        print(f"{'flow':<8} {'target':<12} " + " ".join(f"{f'{k}/10':>5}" for k in range(1, 11)))
        for r in ode_rows:
            tenths = " ".join(f"{value:>5.1f}" for value in r["nfe_by_tenth"])
            print(f"{r['flow']:<8} {r['target']:<12} {tenths}")


if __name__ == "__main__":
    main()
