r"""Why a peer library's flow ends closer to a 2D target than ours: our layer changed one respect
at a time towards the peer's, trained beside the peer's own flow.

What it does. ``--kind realnvp``: every variant is the eight affine couplings of
``kl_2d.build_flow("realnvp")`` (conditioners 2 × 64, SiLU, alternating halves), changed in one
respect towards zuko's ``RealNVP``:

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

``--kind maf``: every variant is the eight MAF layers of ``kl_2d.build_flow("maf")`` (MADE
2 × 64, SiLU, orders alternating natural / reversed), changed in one respect towards nflows'
``MaskedAffineAutoregressiveTransform`` or back to one of our earlier layers. Ours maps
:math:`z_i = x_i e^{-\alpha_i} - m_i` with the scale
:math:`e^{-\alpha} = \mathrm{softplus}(h + b) + 10^{-3}`, 1 at :math:`h = 0` (MADE's outputs
:math:`m, h`); nflows maps :math:`z_i = \sigma_i x_i + t_i` with
:math:`\sigma = \mathrm{softplus}(h) + 10^{-3}` (outputs :math:`t, h`):

* ``ours``: the package's :class:`~nf_course.bijectors.MAF`.
* ``tanhclamp``: the soft clamp :math:`\alpha = 3 \tanh(h / 3)` instead of the softplus
  scale: the package's layer before the softplus scale.
* ``tanhclamp+shiftbefore``: that, with MADE outputting the shift :math:`\mu` itself,
  :math:`z_i = (x_i - \mu_i) e^{-\alpha_i}` (the same maps; only how the shift depends on the
  network's output differs): the package's layer before the shift moved after the scale.
* ``tanhclamp+wideclamp``: the clamp at :math:`\pm \log 10^3` instead of :math:`\pm 3`
  (zuko's range of the log-scale, and nflows' smallest scale).
* ``unbounded``: :math:`\alpha = h`, no bound.
* ``softplus``: nflows' scale, :math:`e^{-\alpha} = \mathrm{softplus}(h) + 10^{-3}`; a fresh
  layer scales by :math:`\log 2 + 10^{-3}`, not 1 (nflows' map up to the sign of the shift,
  which Adam does not see).
* ``torchinit``: MADE's output layer initialized like its other layers (seeded as above).
* ``softplus+torchinit``: both, i.e. nflows' layer built from our class.
* ``nflows``: nflows' flow as ``peers.py`` builds it.

Each is trained and scored exactly as in ``kl_2d_peers.py`` (forward KL on the seed's sample
stream, batch 1024, Adam at ``--lr`` with cosine decay over ``--budget-seconds`` CPU seconds,
one thread; ``KL_pair`` on the same 20 000 held-out samples). It prints one line per run, then
per variant the median KL over the seeds, its range, and ``ours`` minus the variant with the
two-sided p-value of the exact Mann-Whitney U test over the seeds. ``--summarize LOG ...``
prints that table from the per-run lines of earlier outputs (runs of one kind, target and
budget). The outputs ``results/coupling_ablation_*.txt`` were made by this script's first
version, ``coupling_ablation.py``, which had only the RealNVP variants (same code); the MAF
outputs made while the package's MAF was an earlier layer map their variants' names to
today's in their first line.

Run::

    .venv/bin/python benchmarks/layer_ablation.py --help
    .venv/bin/python benchmarks/layer_ablation.py --kind realnvp --target moons \
        --budget-seconds 60 --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/layer_ablation.py --kind maf --target rings --variants ours \
        shiftbefore softplus nflows

Needs zuko and nflows for the peers' variants: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from types import MethodType

import torch
from kl_2d import LR
from kl_2d_peers import mann_whitney_p, train_and_score
from peers import build
from torch import Tensor
from torch.nn import functional as F

from nf_course.bijectors import IAF, MAF, AffineCoupling
from nf_course.datasets import TOY_DATASETS

#: zuko's minimum slope of its affine transform: the log-scale stays within ±log(1/1e-3).
ZUKO_LOG_SLOPE = math.log(1e-3)
#: nflows' smallest scale of its masked affine transform, σ = softplus(h) + 1e-3.
NFLOWS_MIN_SCALE = 1e-3
#: The variants of each kind; the last one is the peer's own flow.
VARIANTS = {
    "realnvp": ("ours", "softclip", "torchinit", "softclip+torchinit", "zuko"),
    "maf": (
        "ours",
        "tanhclamp",
        "tanhclamp+shiftbefore",
        "tanhclamp+wideclamp",
        "unbounded",
        "softplus",
        "torchinit",
        "softplus+torchinit",
        "nflows",
    ),
}
# A per-run line of the output, as ``main`` prints it.
RUN_LINE = re.compile(
    r"^(?P<target>\w+) (?P<variant>\S+) seed \d+: KL (?P<kl>\S+) steps (?P<steps>\d+)$"
)


def soft_clipped_conditioner(self: AffineCoupling, y_A: Tensor) -> tuple[Tensor, Tensor]:
    """A coupling's conditioner with zuko's log-scale ``s = h / (1 + |h / log 1e-3|)``."""
    h, t = self._net(y_A, 2, (len(self.index_B),))
    return h / (1 + (h / ZUKO_LOG_SLOPE).abs()), t


def tanh_clamp_log_scale(self: MAF, h: Tensor) -> Tensor:
    """The soft clamp ``alpha = c tanh(h / c)`` (``c = self.alpha_bound``)."""
    return self.alpha_bound * torch.tanh(h / self.alpha_bound)


def nflows_log_scale(self: MAF, h: Tensor) -> Tensor:
    """nflows' scale: the density direction multiplies by ``exp(-alpha) = softplus(h) + 1e-3``."""
    return -torch.log(F.softplus(h) + NFLOWS_MIN_SCALE)


def shift_after_scale_conditioner(
    log_scale: Callable[[MAF, Tensor], Tensor],
) -> Callable[[MAF, Tensor], tuple[Tensor, Tensor]]:
    """A MAF layer's MADE pass ``x -> (mu, alpha)`` as the package's (``mu = exp(alpha) m`` for
    MADE's outputs ``m, h``), with ``alpha = log_scale(layer, h)``."""

    def conditioner(self: MAF, x: Tensor) -> tuple[Tensor, Tensor]:
        m, h = self.made(x).unbind(dim=1)
        alpha = log_scale(self, h)
        return torch.exp(alpha) * m, alpha

    return conditioner


def build_variant(kind: str, name: str, seed: int) -> torch.nn.Module:
    """The flow of variant ``name`` (one of ``VARIANTS[kind]``), initialized from ``seed``."""
    peer = VARIANTS[kind][-1]
    model = build(kind, peer if name == peer else "nf_course", seed=seed)
    if name != peer:
        change_layers(model, kind, name, seed)
    return model


def change_layers(model: torch.nn.Module, kind: str, name: str, seed: int) -> None:
    """Make every layer of ``kind`` in ``model`` (a package flow) the layer of variant ``name``,
    in place (a new initialization of the output layers is drawn from ``seed``)."""
    layer_type = AffineCoupling if kind == "realnvp" else MAF
    layers = [module for module in model.modules() if isinstance(module, layer_type)]
    if "torchinit" in name:
        torch.manual_seed(1000 + seed)
        for layer in layers:
            (layer.net if kind == "realnvp" else layer.made.layers)[-1].reset_parameters()
    # Bound methods, so that a copy of a layer (the checker's) calls its own network.
    conditioner = {
        "softclip": soft_clipped_conditioner,
        "tanhclamp": shift_after_scale_conditioner(tanh_clamp_log_scale),
        # IAF's conditioner: the same clamp, MADE's first output is the shift mu itself.
        "shiftbefore": IAF.conditioner,
        "unbounded": shift_after_scale_conditioner(lambda layer, h: h),
        "softplus": shift_after_scale_conditioner(nflows_log_scale),
    }
    changes = set(name.split("+"))
    for layer in layers:
        for change, method in conditioner.items():  # shiftbefore after tanhclamp: it wins
            if change in changes:
                layer.conditioner = MethodType(method, layer)
        if "softclip" in changes:
            layer.scale.requires_grad_(False)  # the bound a is not used: no gradient, no step
        if "tanhclamp" in changes:
            wide = "wideclamp" in changes  # else the clamp of the earlier MAF layers, IAF's
            layer.alpha_bound = -ZUKO_LOG_SLOPE if wide else IAF.default_alpha_bound


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
    parser.add_argument("--kind", choices=list(VARIANTS), default="realnvp")
    parser.add_argument("--target", choices=list(TOY_DATASETS), default="moons")
    parser.add_argument(
        "--variants", nargs="+", help="of the kind's (default: all of them, the peer last)"
    )
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
    variants = args.variants or list(VARIANTS[args.kind])
    unknown = sorted(set(variants) - set(VARIANTS[args.kind]))
    if unknown:
        parser.error(f"--kind {args.kind} has no variant {unknown}; it has {VARIANTS[args.kind]}")
    torch.set_num_threads(1)
    print(
        f"{args.kind} on {args.target}, budget {args.budget_seconds:g} CPU s per run, 1 thread, "
        f"lr {args.lr:g}, seeds {args.seeds}, torch {torch.__version__}",
        flush=True,
    )
    kls: dict[str, list[float]] = {}
    steps: dict[str, list[int]] = {}
    for name in variants:
        for seed in args.seeds:
            model = build_variant(args.kind, name, seed)
            result = train_and_score(model, args.target, seed, args.budget_seconds, args.lr)
            kl, done = result["kl"], result["steps"]
            kls.setdefault(name, []).append(kl)
            steps.setdefault(name, []).append(done)
            print(f"{args.target} {name} seed {seed}: KL {kl:.4f} steps {done}", flush=True)
    summarize(kls, steps)


if __name__ == "__main__":
    main()
