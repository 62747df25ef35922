r"""Why one library's RealNVP ends closer to a 2D target than ours: our affine coupling against
variants that take one of zuko's choices at a time, and against zuko's own flow.

What it does. Every variant is the eight affine couplings of ``kl_2d.build_flow("realnvp")``
(conditioners 2 × 64, SiLU, alternating halves), changed in one respect:

* ``ours``: the package's :class:`~nf_course.bijectors.AffineCoupling`, log-scale
  :math:`s = a \tanh(h)` with a learnable bound :math:`a` starting at 1, output layer at zero
  (each layer starts as the identity).
* ``softclip``: zuko's log-scale, :math:`s = h / (1 + |h| / \log 10^3)` (an unbounded
  :math:`h`, soft-clipped to :math:`\pm \log 10^3`; zuko's ``MonotonicAffineTransform`` with
  its default minimum slope :math:`10^{-3}`), no learnable bound.
* ``torchinit``: the output layer of each conditioner initialized like its other layers
  (torch's default, drawn after ``torch.manual_seed(1000 + seed)``), as zuko's MLP does, so no
  layer starts as the identity.
* ``softclip+torchinit``: both, i.e. zuko's coupling layer built from our class.
* ``zuko``: ``zuko.flows.RealNVP`` as ``peers.py`` builds it.

Each is trained and scored exactly as in ``kl_2d_peers.py`` (forward KL on the seed's sample
stream, batch 1024, Adam at ``--lr`` with cosine decay over ``--budget-seconds`` CPU seconds,
one thread; ``KL_pair`` on the same 20 000 held-out samples). It prints one line per run, then
per variant the median KL over the seeds, its range, and ``ours`` minus the variant with the
two-sided p-value of the exact Mann-Whitney U test over the seeds. ``--summarize LOG ...``
prints that table from the per-run lines of earlier outputs (runs of one target and budget).

Run::

    .venv/bin/python benchmarks/coupling_ablation.py --help
    .venv/bin/python benchmarks/coupling_ablation.py --target moons --budget-seconds 60 \
        --seeds 0 1 2 3 4 --variants ours softclip torchinit softclip+torchinit zuko

Needs zuko for the ``zuko`` variant: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from pathlib import Path

import torch
from kl_2d import LR
from kl_2d_peers import mann_whitney_p, train_and_score
from peers import build
from torch import Tensor

from nf_course.bijectors import AffineCoupling
from nf_course.datasets import TOY_DATASETS

#: zuko's minimum slope of its affine transform: the log-scale stays within ±log(1/1e-3).
ZUKO_LOG_SLOPE = math.log(1e-3)
VARIANTS = ("ours", "softclip", "torchinit", "softclip+torchinit", "zuko")
# A per-run line of the output, as ``main`` prints it.
RUN_LINE = re.compile(
    r"^(?P<target>\w+) (?P<variant>\S+) seed \d+: KL (?P<kl>\S+) steps (?P<steps>\d+)$"
)


def soft_clipped_conditioner(layer: AffineCoupling):
    """``layer``'s conditioner with zuko's log-scale ``s = h / (1 + |h / log 1e-3|)``."""

    def conditioner(y_A: Tensor) -> tuple[Tensor, Tensor]:
        h, t = layer._net(y_A, 2, (len(layer.index_B),))
        return h / (1 + (h / ZUKO_LOG_SLOPE).abs()), t

    return conditioner


def build_variant(name: str, seed: int) -> torch.nn.Module:
    """The flow of variant ``name`` (one of :data:`VARIANTS`), initialized from ``seed``."""
    model = build("realnvp", "zuko" if name == "zuko" else "nf_course", seed=seed)
    if name == "zuko":
        return model
    layers = [module for module in model.modules() if isinstance(module, AffineCoupling)]
    if "torchinit" in name:
        torch.manual_seed(1000 + seed)
        for layer in layers:
            layer.net[-1].reset_parameters()
    if "softclip" in name:
        for layer in layers:
            layer.scale.requires_grad_(False)  # the bound a is not used: no gradient, no step
            layer.conditioner = soft_clipped_conditioner(layer)
    return model


def summarize(kls: dict[str, list[float]], steps: dict[str, list[int]]) -> None:
    """Per variant: runs, median KL, range, median steps, and ours minus it with the p-value."""
    columns = f"{'runs':>4} {'KL median [min, max]':>26} {'steps':>6} {'ours - variant (p)':>20}"
    print(f"\n{'variant':<20} {columns}")
    for name in kls:
        low, high, median = min(kls[name]), max(kls[name]), statistics.median(kls[name])
        done = statistics.median(steps[name])
        row = f"{name:<20} {len(kls[name]):>4} {median:>8.4f} [{low:.4f}, {high:.4f}] {done:>6.0f}"
        if "ours" in kls and name != "ours":
            difference = statistics.median(kls["ours"]) - median
            row += f" {difference:>+12.4f} ({mann_whitney_p(kls['ours'], kls[name]):.2f})"
        print(row)


def read_runs(logs: list[Path]) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """The KLs and steps of each variant in the per-run lines of earlier outputs."""
    kls: dict[str, list[float]] = {}
    steps: dict[str, list[int]] = {}
    for log in logs:
        for match in map(RUN_LINE.match, log.read_text().splitlines()):
            if match is not None:
                kls.setdefault(match["variant"], []).append(float(match["kl"]))
                steps.setdefault(match["variant"], []).append(int(match["steps"]))
    return kls, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=list(TOY_DATASETS), default="moons")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget-seconds", type=float, default=60.0, help="CPU s per run (60)")
    parser.add_argument("--lr", type=float, default=LR, help=f"initial learning rate ({LR:g})")
    parser.add_argument(
        "--summarize", nargs="+", type=Path, metavar="LOG", help="train nothing: tabulate these"
    )
    args = parser.parse_args()
    if args.summarize:
        summarize(*read_runs(args.summarize))
        return
    torch.set_num_threads(1)
    print(
        f"{args.target}, budget {args.budget_seconds:g} CPU s per run, 1 thread, lr {args.lr:g}, "
        f"seeds {args.seeds}, torch {torch.__version__}",
        flush=True,
    )
    kls: dict[str, list[float]] = {}
    steps: dict[str, list[int]] = {}
    for name in args.variants:
        for seed in args.seeds:
            model = build_variant(name, seed)
            result = train_and_score(model, args.target, seed, args.budget_seconds, args.lr)
            kl, done = result["kl"], result["steps"]
            kls.setdefault(name, []).append(kl)
            steps.setdefault(name, []).append(done)
            print(f"{args.target} {name} seed {seed}: KL {kl:.4f} steps {done}", flush=True)
    summarize(kls, steps)


if __name__ == "__main__":
    main()
