r"""Cost of density evaluation and of sampling against the dimension D: MAF, IAF and RealNVP.

What it measures. One layer of each flow, built for ``D`` in ``--dims`` (default 2 8 32 128):

* ``density``: ``forward`` (data → noise, what ``log_prob`` needs) of a batch of
  ``--batch`` samples;
* ``sample``: ``inverse`` (noise → data, what ``sample`` needs) of the same batch.

Each time is the median over ``--repeats`` timed calls (after ``--warmup`` untimed ones), with
``torch.no_grad()`` and ``time.perf_counter``, in milliseconds; ``xD=2`` is the ratio to the
time at the smallest D. The lecture's table predicts the shape:

* MAF: density is one MADE pass (flat in D up to the network's own cost), sampling is D
  sequential passes (grows ~linearly in D);
* IAF: the mirror image, density D passes, sampling one pass;
* RealNVP (one affine coupling): one conditioner pass in both directions (flat).

The conditioners have the same hidden widths for every D (``HIDDEN``), so the single-pass
cost grows only through the input and output layers; the sequential directions multiply it
by D.

Run::

    .venv/bin/python benchmarks/ar_costs.py --help
    .venv/bin/python benchmarks/ar_costs.py
    .venv/bin/python benchmarks/ar_costs.py --dims 2 4 8 16 32 64 128 256 --threads 1
"""

from __future__ import annotations

import argparse

import torch

from nf_course.bijectors import IAF, MAF, AffineCoupling
from nf_course.profiling import median_seconds

# Conditioner sizes, the same for every D: two hidden layers of 256 units (MADE for MAF and
# IAF, a plain MLP for the coupling), wide enough for MADE's degrees at D = 128.
HIDDEN = 256
DEPTH = 2
SEED = 0

LAYERS = ("MAF", "IAF", "RealNVP")


def build_layer(name: str, dim: int) -> torch.nn.Module:
    """One freshly initialized layer ``name`` on ``R^dim``, with random (non-identity) weights."""
    torch.manual_seed(SEED)
    if name == "MAF":
        layer = MAF(dim, hidden=(HIDDEN,) * DEPTH)
    elif name == "IAF":
        layer = IAF(dim, hidden=(HIDDEN,) * DEPTH)
    else:
        layer = AffineCoupling(dim, hidden=HIDDEN, layers=DEPTH)
    # Fresh layers start as the identity (zero output layer): give them generic weights so that
    # the timed maths is the maths of a trained layer.
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0.0, 0.05)
    return layer.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Median time of density evaluation (forward) and sampling (inverse) of one "
        "MAF, IAF and RealNVP layer as the dimension D grows.",
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 8, 32, 128], help="values of D")
    parser.add_argument("--batch", type=int, default=1000, help="samples per call (default 1000)")
    parser.add_argument("--repeats", type=int, default=21, help="timed calls (default 21)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dims = sorted(args.dims)
    print(
        f"batch {args.batch}, median of {args.repeats} calls, {args.threads} threads, "
        f"conditioners {DEPTH}x{HIDDEN}, torch {torch.__version__}"
    )
    generator = torch.Generator().manual_seed(SEED)
    rows = []
    for name in LAYERS:
        base = {}
        for dim in dims:
            layer = build_layer(name, dim)
            x = torch.randn(args.batch, dim, generator=generator)
            with torch.no_grad():
                density = 1000 * median_seconds(lambda: layer(x), args.repeats, args.warmup)  # noqa: B023
                sample = 1000 * median_seconds(lambda: layer.inverse(x), args.repeats, args.warmup)  # noqa: B023
            base.setdefault("density", density)
            base.setdefault("sample", sample)
            rows.append(
                (name, dim, density, density / base["density"], sample, sample / base["sample"])
            )
    ratio = f"xD={dims[0]}"
    header = f"{'layer':<8} {'D':>5} {'density ms':>11} {ratio:>7} {'sample ms':>10} {ratio:>7}"
    print()
    print(header)
    print("-" * len(header))
    for name, dim, density, density_ratio, sample, sample_ratio in rows:
        print(
            f"{name:<8} {dim:>5} {density:>11.3f} {density_ratio:>7.1f} "
            f"{sample:>10.3f} {sample_ratio:>7.1f}"
        )


if __name__ == "__main__":
    main()
