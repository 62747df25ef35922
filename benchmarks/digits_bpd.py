r"""Bits per dimension of Glow and RealNVP on the 8x8 digits, and the shipped checkpoint.

What it does. For each architecture of :func:`nf_course.pretrained.digits_flow` it trains a fresh
flow by maximum likelihood on the training split of :func:`nf_course.datasets.digits` (1000
images), drawing a minibatch of training images with fresh uniform dequantization noise at every
step; it evaluates the validation split (350 images, one fixed dequantization) every
``--eval-every`` steps, stops early after ``--patience`` evaluations without improvement and keeps
the parameters of the best evaluation (:func:`nf_course.training.fit`). It then reports the
bits/dim of the test split (447 images) in unit-bin space, averaged over ``--test-draws``
independent dequantizations (each draw is an unbiased estimate of the same quantity, the
dequantized model's expected NLL, which bounds the discrete model's NLL), with the standard
error over images.

``--dequantization variational`` trains the same flow jointly with a conditional flow
:math:`q(u \mid x)` for the noise (:class:`nf_course.dequantization.VariationalDequantizer`,
Ho et al. 2019, Flow++) on the ELBO :math:`\log p(x + u) - \log q(u \mid x)`, one draw of
``u ~ q(u | x)`` per training image and step; the validation split is scored by one draw of
the ELBO with a fixed generator. The test bits/dim is then the ELBO averaged over
``--test-draws`` draws of ``u`` per image: like the uniform figure (which is the same bound
with :math:`q = U[0, 1)^{64}`), a bound on the discrete model's NLL, in bits/dim. Give both,
``--dequantization uniform variational``, to train the two with the same seed in one run.

Baselines on the same split (bits/dim), reproduced by ``benchmarks/digits_baselines.py``:
uniform 4.09, full Gaussian 2.95, Gaussian in logit space 2.27, discrete autoregressive
logistic model 2.03. Peers quoted by the course's quality targets (not reproduced here):
pyro's MAF 2.24 and affine coupling 2.41 after 4 CPU-minutes. Target: Glow and RealNVP below
2.0.

``--save`` writes the trained Glow's ``state_dict`` to ``nf_course/checkpoints/glow_digits.pt``
and prints its SHA-256, for :data:`nf_course.pretrained.CHECKPOINTS`.

Run::

    .venv/bin/python benchmarks/digits_bpd.py --help
    .venv/bin/python benchmarks/digits_bpd.py                      # glow and realnvp
    .venv/bin/python benchmarks/digits_bpd.py --architectures glow --save
    .venv/bin/python benchmarks/digits_bpd.py --architectures realnvp --alpha 0.001 \
        --dequantization uniform variational --threads 1 --seed 0 1
    .venv/bin/python benchmarks/digits_bpd.py --architectures glow --alpha 0.001 \
        --dequantization variational --threads 1 --levels 1 --steps 8 --seed 0 1
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from nf_course import Flow
from nf_course.datasets import bits_per_dim, dequantize, digits
from nf_course.dequantization import DequantizedFlow, VariationalDequantizer, dequantized_elbo
from nf_course.pretrained import ARCHITECTURES, digits_flow, save_checkpoint
from nf_course.training import fit

LogBound = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``(images (B, 1, 8, 8), generator) -> (B,)``: one draw of a lower bound on log P(x), nats."""
DEQUANTIZATIONS = ("uniform", "variational")


def training_sampler(images: torch.Tensor):
    """``sampler(n, generator=g)``: ``n`` training images drawn with replacement, dequantized."""

    def sample(n: int, *, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(images.shape[0], (n,), generator=generator)
        return dequantize(images[index], generator=generator)

    return sample


def test_bits_per_dim(
    log_bound: LogBound, images: torch.Tensor, draws: int, seed: int
) -> torch.Tensor:
    """Test bits/dim per image ``(N,)``, float64: ``log_bound`` averaged over ``draws`` draws of
    the noise."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        log_p = torch.stack([log_bound(images, generator) for _ in range(draws)]).mean(dim=0)
    return bits_per_dim(log_p, dims=images[0].numel()).double()


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean of ``values (N,)`` and its standard error."""
    return values.mean().item(), values.std().item() / math.sqrt(values.numel())


def uniform_bound(flow: Flow) -> LogBound:
    """``log p(x + u)``, ``u ~ U[0, 1)^64``: the bound of uniform dequantization (log q = 0)."""
    flow.eval()
    return lambda x, generator: flow.log_prob(dequantize(x, generator=generator))


def variational_bound(model: DequantizedFlow) -> LogBound:
    """``log p(x + u) - log q(u | x)``, ``u ~ q(u | x)``: the ELBO of variational
    dequantization."""
    model.eval()
    return lambda x, generator: dequantized_elbo(
        model.flow, model.dequantizer, x, generator=generator
    )


def parse_arguments() -> argparse.Namespace:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architectures", nargs="+", choices=ARCHITECTURES, default=ARCHITECTURES)
    parser.add_argument(
        "--dequantization",
        nargs="+",
        choices=DEQUANTIZATIONS,
        default=["uniform"],
        help="uniform noise, or a conditional flow q(u | x) trained jointly on the ELBO; "
        "several are run one after the other",
    )
    parser.add_argument("--steps", type=int, default=4, help="flow steps per level/scale")
    parser.add_argument("--hidden", type=int, default=32, help="conditioner channels")
    parser.add_argument("--alpha", type=float, default=0.05, help="logit margin α")
    parser.add_argument(
        "--global-linear",
        action="store_true",
        help="end the flow with an LU linear map of all 64 dimensions",
    )
    parser.add_argument("--levels", type=int, default=2, help="Glow: levels (squeezes)")
    parser.add_argument(
        "--split-prior",
        action="store_true",
        help="Glow: a learned prior for the factored-out half, given the half that goes on",
    )
    parser.add_argument(
        "--dequantizer-couplings", type=int, default=4, help="couplings of q(u | x)"
    )
    parser.add_argument(
        "--dequantizer-hidden", type=int, default=32, help="conditioner channels of q(u | x)"
    )
    parser.add_argument(
        "--dequantizer-features", type=int, default=8, help="feature channels of x in q(u | x)"
    )
    parser.add_argument("--train-steps", type=int, default=6000, help="optimizer steps (max)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--test-draws", type=int, default=10)
    parser.add_argument(
        "--seed", type=int, nargs="+", default=[0], help="one run of every flow per seed"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", action="store_true", help="write the Glow checkpoint")
    return parser.parse_args()


def train_and_test(
    architecture: str, dequantization: str, seed: int, args: argparse.Namespace
) -> tuple[str, torch.Tensor, Flow]:
    """Train one flow (and its dequantizer) with early stopping; return its table row, its
    test bits/dim per image ``(447,)`` and the trained flow."""
    train, validation, test = (digits(split) for split in ("train", "validation", "test"))
    torch.manual_seed(seed)
    flow = digits_flow(
        architecture,
        steps=args.steps,
        hidden=args.hidden,
        alpha=args.alpha,
        global_linear=args.global_linear,
        levels=args.levels,
        split_prior=args.split_prior,
    )
    if dequantization == "uniform":
        model: Flow | DequantizedFlow = flow
        data = training_sampler(train)
        validation = dequantize(validation, generator=torch.Generator().manual_seed(seed + 1))
    else:
        dequantizer = VariationalDequantizer(
            couplings=args.dequantizer_couplings,
            hidden=args.dequantizer_hidden,
            features=args.dequantizer_features,
        )
        model = DequantizedFlow(flow, dequantizer, eval_seed=seed + 1)
        data = train
    history = fit(
        model,
        data=data,
        steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=seed,
        validation=validation,
        eval_every=args.eval_every,
        patience=args.patience,
        progress=False,
    )
    bound = uniform_bound(flow) if model is flow else variational_bound(model)
    bpd = test_bits_per_dim(bound, test, args.test_draws, seed + 2)
    params = sum(p.numel() for p in model.parameters())
    test_bpd, test_se = mean_and_se(bpd)
    row = (
        f"{architecture:<8} {dequantization:<11} {seed:>4} {params:>7} {history.steps[-1]:>6} "
        f"{history.best_step:>6} {history.cpu_time:>6.0f} {bits_per_dim(-history.best_val):>7.3f} "
        f"{test_bpd:>8.3f} {test_se:>6.3f}"
    )
    return row, bpd, flow


def main() -> None:
    args = parse_arguments()
    if args.save and len(args.seed) > 1:
        raise SystemExit("digits_bpd.py: --save writes one checkpoint; give a single --seed")
    glow_only = args.levels != 2 or args.split_prior
    if glow_only and "realnvp" in args.architectures:
        raise SystemExit(
            "digits_bpd.py: --levels and --split-prior are Glow's; give --architectures glow"
        )
    if args.save and glow_only:
        raise SystemExit(
            "digits_bpd.py: --save writes the shipped checkpoint, a two-level Glow without a "
            "split prior (chapter 9 shows its levels); drop --levels and --split-prior"
        )
    torch.set_num_threads(args.threads)
    print(
        "digits 8x8: train 1000, validation 350, test 447; "
        f"{args.threads} threads, torch {torch.__version__}",
        flush=True,
    )
    header = (
        f"{'flow':<8} {'dequant':<11} {'seed':>4} {'params':>7} {'steps':>6} {'best':>6} "
        f"{'cpu s':>6} {'val bpd':>7} {'test bpd':>8} {'±se':>6}"
    )
    rows, differences = [], []
    for architecture in args.architectures:
        for seed in args.seed:
            per_image = {}
            for dequantization in args.dequantization:
                row, per_image[dequantization], flow = train_and_test(
                    architecture, dequantization, seed, args
                )
                rows.append(row)
                print(f"  done {row}", flush=True)
                if args.save and architecture == "glow" and dequantization == "uniform":
                    digest = save_checkpoint(flow, "glow_digits.pt")
                    print(f"  saved nf_course/checkpoints/glow_digits.pt, sha256 {digest}")
            if len(per_image) == 2:
                gain, se = mean_and_se(per_image["uniform"] - per_image["variational"])
                differences.append(
                    f"{architecture} seed {seed}: uniform - variational = {gain:.3f} ± {se:.3f} "
                    "bits/dim (paired over the test images)"
                )
    print()
    print(header)
    print("-" * len(header))
    print("\n".join([*rows, "", *differences] if differences else rows))


if __name__ == "__main__":
    main()
