"""The short, fast fits that the tests and the book run, over several seeds: how far each ends
from its target, with the package's layers or a variant of its MAF.

What it does. ``--fit test_fits``: each flow of ``tests/test_fits.py`` (``--flows``, default
all) fitted exactly as that test fits it (``test_fits.FIT``: steps, batch size, learning rate,
gradient clipping; the seed initializes the flow and drives the fit), scored by the test's
KL(π ‖ p_θ), and counted against the test's bound. A test whose bound sits inside the spread
over seeds fails on a change of rounding as easily as on a bug; this measures the margin.
``--fit chapter7``: chapter 7's stack of five MAF layers on moons (orders alternating, MADE
2 × 64, 1000 steps, batch 256, at ``--lr``), scored as the chapter scores it, mean NLL on 5000
held-out samples minus the target's entropy. Either fit can run with the MAF layers changed
into a variant of ``layer_ablation.py`` (``--maf-variant``; ``tanhclamp`` is the package's
layer before its softplus scale, ``tanhclamp+shiftbefore`` the one before the shift moved after
the scale); ``--steps`` and ``--lr`` override the fit's.
It prints one line per seed, then the median KL, the largest and, for ``test_fits``, how
many runs ended at or above the bound. One thread.

Run::

    .venv/bin/python benchmarks/short_fits.py --help
    .venv/bin/python benchmarks/short_fits.py --fit test_fits --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/short_fits.py --fit test_fits --flows MAF --maf-variant \
        tanhclamp --steps 1500
    .venv/bin/python benchmarks/short_fits.py --fit chapter7 --lr 1e-2 --maf-variant tanhclamp
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from layer_ablation import VARIANTS, change_layers

import nf_course as nf
from nf_course.bijectors import MAF
from nf_course.datasets import toy
from nf_course.training import fit, mean_nll

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fits  # the test's flows, fit and score, defined once

#: Chapter 7's fit of its five-layer MAF to moons (the chapter's last training cell).
CHAPTER7 = {"steps": 1000, "batch_size": 256, "lr": 1e-2}
CHAPTER7_ORDERS = ["natural", "reversed"] * 2 + ["natural"]
MOONS = toy("moons")


def changed(build: Callable[[], torch.nn.Module], variant: str) -> Callable[[], torch.nn.Module]:
    """``build`` with the MAF layers of what it builds changed into ``variant``."""

    def build_variant() -> torch.nn.Module:
        model = build()
        change_layers(model, "maf", variant, seed=0)  # the seedless variants ignore the seed
        return model

    return build_variant


def chapter7_kl(seed: int, variant: str, settings: dict, test: torch.Tensor) -> float:
    """KL of chapter 7's five-layer MAF fitted to moons from ``seed``, as the chapter scores it
    on the held-out samples ``test``."""
    torch.manual_seed(seed)
    layers = [MAF(2, hidden=(64, 64), order=order) for order in CHAPTER7_ORDERS]
    flow = nf.Flow(nf.Compose(*layers), nf.StandardNormal(2))
    change_layers(flow, "maf", variant, seed=0)
    fit(flow, data=MOONS.sample, seed=seed, progress=False, **settings)
    return mean_nll(flow, test) - MOONS.entropy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", choices=["test_fits", "chapter7"], default="test_fits")
    parser.add_argument("--flows", nargs="+", choices=list(test_fits.FLOWS), help="test_fits'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, help="default: the fit's own")
    parser.add_argument("--lr", type=float, help="default: the fit's own")
    seedless = [name for name in VARIANTS["maf"][:-1] if "torchinit" not in name]
    parser.add_argument("--maf-variant", choices=seedless, default="ours")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = dict(test_fits.FIT if args.fit == "test_fits" else CHAPTER7)
    settings.update({k: v for k, v in (("steps", args.steps), ("lr", args.lr)) if v is not None})
    print(f"{args.fit}: fit {settings}, MAF variant {args.maf_variant}", flush=True)
    if args.fit == "chapter7":
        test = MOONS.sample(5000, generator=torch.Generator().manual_seed(1))
        runs = {"MAF": lambda seed: chapter7_kl(seed, args.maf_variant, settings, test)}
    else:
        runs = {}
        for name in args.flows or list(test_fits.FLOWS):
            build = changed(test_fits.FLOWS[name], args.maf_variant)
            runs[name] = lambda seed, build=build: test_fits.kl_to_truth(
                test_fits.fitted_flow(build, seed, settings)
            )
    for name, run in runs.items():
        kls = []
        for seed in args.seeds:
            kls.append(run(seed))
            print(f"{name} seed {seed}: KL {kls[-1]:.4f}", flush=True)
        line = f"{name}: median {statistics.median(kls):.4f}, largest {max(kls):.4f}"
        if args.fit == "test_fits":
            above = sum(kl >= test_fits.BOUND for kl in kls)
            line += f", {above} of {len(kls)} at or above the bound {test_fits.BOUND}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
