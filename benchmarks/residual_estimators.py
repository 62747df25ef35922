r"""Bias, noise and cost of the log-det estimators of invertible residual flows.

What it measures. For each ``D`` in ``--dims`` it builds a stack of ``--blocks``
:class:`~nf_course.bijectors.residual.InvertibleResidual` layers (float64, ``--hidden`` units,
``--layers`` hidden layers, spectral bound ``--lipschitz``) and trains it for
``--train-steps`` full-batch Adam steps (learning rate ``--lr``, exact log-det) by maximum
likelihood on ``--train-samples`` draws of a Gaussian with covariance ``A Aᵀ``, ``A = Q S``
with ``Q`` a random rotation and the scales ``S`` log-uniform in ``[1/3, 3]`` (seed 0). To
undo those scales the blocks must expand and contract strongly, so their Jacobians grow
towards the Lipschitz bound and the power series needs many terms: a fresh or randomly
perturbed block has ``‖J_r‖`` far below its bound (``--train-steps 0 --perturb 0.3`` shows
that case). It then compares, for ``--points`` draws of the same data (seed 1), the stack's
``log|det ∂f/∂x|`` (the sum over the blocks, each at its own input) by

* ``exact``: the full Jacobian of each block and ``slogdet`` (the reference);
* ``series n`` for ``n`` in ``--terms``: the power series truncated after ``n`` terms, each
  trace by Hutchinson (Rademacher probes);
* ``roulette``: the Russian-roulette estimator, ``N = 1 + G``, ``G ~ Geometric(--p)``.

Columns.

* ``terms``: ``n``, or for the roulette the expected number ``1 + (1-p)/p`` per block.
* ``bias``: mean of ``estimate - exact`` over ``--repeats`` independent estimates at each point
  (probe and ``N`` drawn per sample; seed 2), averaged over the points; ``se``: its standard
  error, ``std(estimate - exact)/√(points·repeats)``.
* ``trunc``: the series' truncation bias alone, from the exact traces ``tr(J^k)`` (no
  Hutchinson noise), averaged over the points; ``bound``: the a-priori bound
  ``Σ_blocks D L^{n+1}/((n+1)(1-L))`` with ``L`` each block's Lipschitz bound.
* ``std``: the standard deviation of one estimate around its mean at a point, root mean square
  over the points: the noise a single training step sees per sample.
* ``fwd ms``: median time of one ``forward`` of the stack on a batch of ``--batch`` points
  under ``torch.no_grad()`` (density evaluation); ``train ms``: forward, mean log-det and
  backward to the parameters (the estimator's graph built with ``create_graph``), the cost in
  a training step. Medians over ``--timing-repeats`` calls after one warm-up call.

Run::

    .venv/bin/python benchmarks/residual_estimators.py --help
    .venv/bin/python benchmarks/residual_estimators.py
    .venv/bin/python benchmarks/residual_estimators.py --dims 2 --terms 1 2 4 --repeats 50
    .venv/bin/python benchmarks/residual_estimators.py --train-steps 0 --perturb 0.3
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import Tensor

from nf_course.bijectors.residual import (
    InvertibleResidual,
    series_partial_sums,
    series_truncation_bound,
)
from nf_course.core import Compose, Flow, StandardNormal
from nf_course.profiling import median_seconds

SEED_PARAMETERS, SEED_POINTS, SEED_ESTIMATES, SEED_TRAINING = 0, 1, 2, 3


def build_stack(args: argparse.Namespace, dim: int) -> Compose:
    """``--blocks`` float64 residual blocks on ``R^dim``, with ``--perturb`` parameter noise."""
    stack = Compose(
        *[
            InvertibleResidual(
                dim,
                hidden=args.hidden,
                layers=args.layers,
                lipschitz=args.lipschitz,
                roulette_p=args.p,
                seed=SEED_PARAMETERS + k,
            )
            for k in range(args.blocks)
        ]
    ).double()
    generator = torch.Generator().manual_seed(SEED_PARAMETERS)
    with torch.no_grad():
        for parameter in stack.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.add_(args.perturb * noise)
    return stack


def gaussian_data(dim: int, n: int, seed: int) -> Tensor:
    """``(n, dim)`` draws of ``N(0, A Aᵀ)``, ``A = Q S``: random rotation, scales in [1/3, 3]."""
    generator = torch.Generator().manual_seed(SEED_PARAMETERS)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    scales = torch.exp(math.log(3) * (2 * torch.rand(dim, generator=generator) - 1))
    noise = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return noise @ (rotation * scales.double()).mT


def fit_stack(stack: Compose, data: Tensor, steps: int, lr: float) -> tuple[float, float]:
    """Fit ``stack`` by full-batch Adam on ``data``; its NLL (nats) before and after."""
    flow = Flow(stack, StandardNormal(data.shape[1])).double()
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    with torch.no_grad():
        before = flow.forward_kl(data).item()
    for _ in range(steps):
        optimizer.zero_grad()
        flow.forward_kl(data).backward()
        optimizer.step()
    with torch.no_grad():
        after = flow.forward_kl(data).item()
    return before, after


def use_estimator(stack: Compose, method: str, n_terms: int) -> None:
    """Switch every block of ``stack`` to ``method`` (with ``n_terms`` for the series)."""
    for block in stack:
        block.log_det_mode = method
        block.n_terms = n_terms


def truncation_bias(stack: Compose, x: Tensor, n_terms: int) -> tuple[float, float]:
    """Mean over the points of the exact ``n``-term series minus the exact log-det, and the
    a-priori bound summed over the blocks."""
    bias = torch.zeros(x.shape[0], dtype=x.dtype)
    bound = 0.0
    with torch.no_grad():
        for block in stack:
            exact = block.estimate_log_det(x, method="exact")
            partial = series_partial_sums(block.exact_traces(x, n_terms))[:, -1]
            bias += partial - exact
            bound += series_truncation_bound(n_terms, block.lipschitz_bound(), block.dim)
            x = x + block.residual(x)
    return bias.mean().item(), bound


def costs(stack: Compose, x: Tensor, repeats: int) -> tuple[float, float]:
    """``(fwd ms, train ms)`` of the stack's current estimator on the batch ``x``."""

    def density() -> None:
        with torch.no_grad():
            stack(x)

    def training() -> None:
        stack.zero_grad()
        _, log_det = stack(x)
        log_det.mean().backward()

    return 1000 * median_seconds(density, repeats), 1000 * median_seconds(training, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Bias, standard deviation and cost of the truncated-series and Russian-"
        "roulette log-det estimators of an InvertibleResidual stack, against the exact log-det.",
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 16], help="values of D")
    parser.add_argument(
        "--terms", nargs="+", type=int, default=list(range(1, 11)), help="series lengths n"
    )
    parser.add_argument("--blocks", type=int, default=2, help="residual blocks (default 2)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width (default 64)")
    parser.add_argument("--layers", type=int, default=2, help="hidden layers (default 2)")
    parser.add_argument("--lipschitz", type=float, default=0.9, help="bound c (default 0.9)")
    parser.add_argument("--p", type=float, default=0.4, help="roulette's p (default 0.4)")
    parser.add_argument(
        "--perturb", type=float, default=0.0, help="std of the parameter noise (default 0)"
    )
    parser.add_argument("--train-steps", type=int, default=100, help="Adam steps (default 100)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate")
    parser.add_argument("--train-samples", type=int, default=512, help="training set size")
    parser.add_argument("--points", type=int, default=32, help="points x (default 32)")
    parser.add_argument(
        "--repeats", type=int, default=200, help="estimates per point (default 200)"
    )
    parser.add_argument("--batch", type=int, default=256, help="batch of the timings")
    parser.add_argument("--timing-repeats", type=int, default=5, help="timed calls (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{args.blocks} blocks x ({args.layers} hidden layers of {args.hidden}, c = "
        f"{args.lipschitz}), parameter noise {args.perturb}, {args.train_steps} Adam steps "
        f"(lr {args.lr}) on {args.train_samples} samples, {args.points} points x "
        f"{args.repeats} estimates, timings on a batch of {args.batch}, median of "
        f"{args.timing_repeats}, {args.threads} thread(s), float64, torch {torch.__version__}"
    )
    header = (
        f"{'D':>3} {'method':<9} {'terms':>5} {'bias':>10} {'se':>9} {'trunc':>10} "
        f"{'bound':>9} {'std':>9} {'fwd ms':>8} {'train ms':>9}"
    )
    for dim in sorted(args.dims):
        stack = build_stack(args, dim)
        nll = fit_stack(
            stack, gaussian_data(dim, args.train_samples, SEED_TRAINING), args.train_steps, args.lr
        )
        points = gaussian_data(dim, args.points + args.batch, SEED_POINTS)
        x, batch = points[: args.points], points[args.points :]
        lipschitz = [block.lipschitz_bound(exact=True) for block in stack]
        spectral, inputs = [], x
        with torch.no_grad():
            for block in stack:  # each block at its own input
                spectral.append(
                    torch.linalg.matrix_norm(block.jacobian(inputs), ord=2).max().item()
                )
                inputs = inputs + block.residual(inputs)
        print(
            f"\nD = {dim}: training NLL {nll[0]:.3f} -> {nll[1]:.3f} nats; per block, "
            "Lipschitz bound (largest ‖J_r(x)‖₂ at the points): "
            + ", ".join(f"{a:.3f} ({b:.3f})" for a, b in zip(lipschitz, spectral, strict=True))
        )
        print(header)
        print("-" * len(header))
        use_estimator(stack, "exact", 1)
        with torch.no_grad():
            exact = stack(x)[1]
        fwd_ms, train_ms = costs(stack, batch, args.timing_repeats)
        print(f"{dim:>3} {'exact':<9} {'-':>5} {'':>10} {'':>9} {'':>10} {'':>9} {'':>9} ", end="")
        print(f"{fwd_ms:>8.2f} {train_ms:>9.2f}")
        repeated = x.repeat_interleave(args.repeats, dim=0)
        rows = [("series", n) for n in args.terms] + [("roulette", 0)]
        for method, n_terms in rows:
            use_estimator(stack, method, max(n_terms, 1))
            torch.manual_seed(SEED_ESTIMATES)
            with torch.no_grad():
                estimates = stack(repeated)[1].reshape(args.points, args.repeats)
            errors = estimates - exact.unsqueeze(1)
            bias = errors.mean().item()
            se = errors.std().item() / math.sqrt(errors.numel())
            noise = estimates.var(dim=1).mean().sqrt().item()
            fwd_ms, train_ms = costs(stack, batch, args.timing_repeats)
            if method == "series":
                trunc, bound = truncation_bias(stack, x, n_terms)
                terms, trunc_text, bound_text = str(n_terms), f"{trunc:>10.2e}", f"{bound:>9.2e}"
            else:
                terms = f"{1 + (1 - args.p) / args.p:.1f}"
                trunc_text, bound_text = f"{0.0:>10.2e}", f"{'-':>9}"
            print(
                f"{dim:>3} {method:<9} {terms:>5} {bias:>10.2e} {se:>9.1e} {trunc_text} "
                f"{bound_text} {noise:>9.2e} {fwd_ms:>8.2f} {train_ms:>9.2f}"
            )


if __name__ == "__main__":
    main()
