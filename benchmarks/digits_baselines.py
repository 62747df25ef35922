r"""The baselines of the 8x8 digits benchmark, reproduced: bits/dim on the test split.

Chapter 9 and the appendix compare the digits flows with four baselines; this script computes
them from :func:`nf_course.datasets.digits` (train = images 0-999, validation = 1000-1349,
test = 1350-1796 of scikit-learn's ``load_digits``). Every model is fitted on images 0-1349
(train and validation) and scored on the test split, in bits per dimension (64 dimensions).

* **uniform**: the density 17^-64 on [0, 17)^64, exactly log2 17.
* **full Gaussian**: a Gaussian with the maximum-likelihood mean and covariance of one uniform
  dequantization ``y = k + u`` of the fitting images (seed ``--seed``), scored on
  ``--test-draws`` dequantizations of the test images, in unit-bin space.
* **Gaussian in logit space**: the same after RealNVP's logit pre-processing
  (:class:`nf_course.bijectors.Logit`, ``bins=17``, margin ``--alpha``); the log-determinant of
  the pre-processing keeps the density in unit-bin space.
* **discrete autoregressive logistic model**: the levels ``k`` themselves, no dequantization.
  Pixel ``j`` (raster order) gets one scikit-learn ``LogisticRegression(C=0.3)`` over the 17
  levels with the previous pixels ``k_1 .. k_{j-1}`` scaled by 1/16 as features (pixel 1 has no
  features: its empirical frequencies, which is what an intercept-only model fits; so has a pixel
  with a single level in the fitting images). Its probabilities are mixed 1 % with the pixel's
  add-one-smoothed marginal over the 17 levels, so that a level never seen gets a positive
  probability. The score is the exact discrete negative log-likelihood
  ``-Σ_j log2 P(k_j | k_<j) / 64``.

Why a discrete model and a dequantized flow share one scale: a discrete model ``P`` is the
density ``p(k + u) = P(k)`` on the unit bins, whose dequantized NLL is exactly ``-log P(k)``; and
for any density ``p`` in unit-bin space, Jensen's inequality gives
``-log ∫ p(k + u) du ≤ E_u[-log p(k + u)]``, so a flow's dequantized test NLL is an upper bound
on the NLL of the discrete model it defines. Comparing the flow's bound with the discrete
model's exact value can only flatter the discrete model.

Prints one table; with ``--out FILE`` also writes it to FILE (the run shown in
``benchmarks/README.md`` is ``benchmarks/results/digits_baselines.txt``).

Run::

    .venv/bin/python benchmarks/digits_baselines.py --help
    .venv/bin/python benchmarks/digits_baselines.py --out benchmarks/results/digits_baselines.txt
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from nf_course.bijectors import Logit
from nf_course.datasets import DIGITS_LEVELS, bits_per_dim, dequantize, digits

PIXELS = 64


def fitting_and_test_levels() -> tuple[torch.Tensor, torch.Tensor]:
    """``(images 0-1349 (1350, 64), test images (447, 64))``, float64 integer levels."""
    fitting = torch.cat(
        [digits("train", dtype=torch.float64), digits("validation", dtype=torch.float64)]
    )
    test = digits("test", dtype=torch.float64)
    return fitting.reshape(-1, PIXELS), test.reshape(-1, PIXELS)


def gaussian_bits_per_dim(
    fitting: torch.Tensor, test: torch.Tensor, *, alpha: float | None, seed: int, draws: int
) -> tuple[float, float]:
    """Test bits/dim (mean over ``draws`` dequantizations, standard error over images).

    ``alpha=None``: a Gaussian on the dequantized pixels; otherwise on their logits, with the
    pre-processing's log-determinant added so that the density stays in unit-bin space.
    """
    generator = torch.Generator().manual_seed(seed)
    preprocess = None if alpha is None else Logit(bins=DIGITS_LEVELS, alpha=alpha)

    def features(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = dequantize(levels, generator=generator)
        if preprocess is None:
            return y, torch.zeros(len(y), dtype=y.dtype)
        return preprocess(y)

    u_fit, _ = features(fitting)
    gaussian = torch.distributions.MultivariateNormal(
        u_fit.mean(dim=0), torch.cov(u_fit.T, correction=0)
    )
    log_p = []
    for _ in range(draws):
        u, log_det = features(test)
        log_p.append(gaussian.log_prob(u) + log_det)
    per_image = bits_per_dim(torch.stack(log_p).mean(dim=0), dims=PIXELS)
    return per_image.mean().item(), per_image.std().item() / math.sqrt(len(per_image))


def autoregressive_logistic_bits_per_dim(
    fitting: np.ndarray, test: np.ndarray, *, C: float = 0.3, mixing: float = 0.01
) -> tuple[float, float, int]:
    """Exact discrete test bits/dim of the autoregressive logistic model, its standard error,
    and the number of pixels whose classifier did not converge (module docstring).

    Args:
        fitting: integer levels ``(N, 64)``; test: integer levels ``(M, 64)``.
        C: inverse regularization strength of every ``LogisticRegression``.
        mixing: weight of the smoothed marginal in each conditional.
    """
    log_p = np.zeros(len(test))
    rows = np.arange(len(test))
    not_converged = 0
    for j in range(PIXELS):
        counts = np.bincount(fitting[:, j], minlength=DIGITS_LEVELS)
        smoothed = (counts + 1) / (counts.sum() + DIGITS_LEVELS)
        if j == 0 or np.count_nonzero(counts) == 1:
            conditional = np.tile(counts / counts.sum(), (len(test), 1))
        else:
            classifier = LogisticRegression(C=C, max_iter=5000)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                classifier.fit(fitting[:, :j] / 16, fitting[:, j])
            not_converged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            conditional = np.zeros((len(test), DIGITS_LEVELS))
            conditional[:, classifier.classes_] = classifier.predict_proba(test[:, :j] / 16)
        probabilities = (1 - mixing) * conditional + mixing * smoothed
        log_p += np.log(probabilities[rows, test[:, j]])
    per_image = -log_p / (PIXELS * math.log(2))
    return per_image.mean(), per_image.std(ddof=1) / math.sqrt(len(per_image)), not_converged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alpha", type=float, default=0.005, help="logit margin α")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise")
    parser.add_argument("--test-draws", type=int, default=10, help="test dequantizations")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()

    fitting, test = fitting_and_test_levels()
    lines = [
        f"8x8 digits: fit on images 0-{len(fitting) - 1} (train + validation), score on the "
        f"{len(test)} test images; bits/dim (± standard error over images); "
        f"torch {torch.__version__}",
        "",
        f"{'baseline':<46}{'bits/dim':>9}{'± se':>8}{'seconds':>9}",
        "-" * 72,
    ]

    def row(name: str, value: float, error: float, seconds: float) -> None:
        lines.append(f"{name:<46}{value:>9.3f}{error:>8.3f}{seconds:>9.1f}")
        print(lines[-1], flush=True)

    print("\n".join(lines), flush=True)
    row("uniform on [0, 17)^64 (log2 17)", math.log2(DIGITS_LEVELS), 0.0, 0.0)
    start = time.perf_counter()
    value, error = gaussian_bits_per_dim(
        fitting, test, alpha=None, seed=args.seed, draws=args.test_draws
    )
    row("full Gaussian, unit-bin space", value, error, time.perf_counter() - start)
    start = time.perf_counter()
    value, error = gaussian_bits_per_dim(
        fitting, test, alpha=args.alpha, seed=args.seed, draws=args.test_draws
    )
    row(
        f"full Gaussian in logit space (alpha {args.alpha:g})",
        value,
        error,
        time.perf_counter() - start,
    )
    start = time.perf_counter()
    value, error, not_converged = autoregressive_logistic_bits_per_dim(
        fitting.numpy().astype(np.int64), test.numpy().astype(np.int64)
    )
    row("autoregressive logistic (discrete, exact NLL)", value, error, time.perf_counter() - start)
    lines.append(f"logistic regressions that did not converge: {not_converged} of {PIXELS}")
    print(lines[-1])
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
