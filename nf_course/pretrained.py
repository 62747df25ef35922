"""Flows trained longer than a book build allows, shipped as checksummed checkpoints in
``nf_course/checkpoints/``: :func:`load_pretrained` rebuilds the architecture
(:func:`digits_flow`, :func:`planar_flow`), checks the file against :data:`CHECKPOINTS`
(SHA-256, the command that wrote it, its score) and loads the parameters.

Chapters: ``book/09_glow.md`` (Glow on the digits, from ``benchmarks/digits_bpd.py --save``) and
``book/05_planar_sylvester.md`` (planar flows fitted to U1-U4, Rezende and Mohamed 2015, from
``benchmarks/planar_energies.py --save``); tests: ``tests/test_pretrained.py``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from nf_course.bijectors import (
    ActNorm,
    AffineCoupling2d,
    Glow,
    InvConv1x1,
    Logit,
    Planar,
    Squeeze,
)
from nf_course.core import Compose, Flow, Inverse, StandardNormal
from nf_course.datasets import DIGITS_LEVELS, DIGITS_SHAPE

__all__ = [
    "CHECKPOINTS",
    "Checkpoint",
    "digits_flow",
    "load_pretrained",
    "planar_flow",
    "save_checkpoint",
]

ARCHITECTURES = ("glow", "realnvp")
PLANAR_DEPTHS = (2, 8, 32)
ENERGY_NAMES = ("U1", "U2", "U3", "U4")


def digits_flow(
    architecture: str = "glow",
    *,
    steps: int = 4,
    hidden: int = 32,
    alpha: float = 0.05,
    global_linear: bool = False,
    levels: int = 2,
    split_prior: bool = False,
) -> Flow:
    """A fresh flow on dequantized 8x8 digits ``(B, 1, 8, 8)``, with a standard normal base.

    The flow models ``y = x + u ∈ [0, 17)^{1×8×8}`` in unit-bin space
    (:func:`~nf_course.datasets.dequantize`), so ``-log p(y) / (64 ln 2)`` is its bits per
    dimension (:func:`~nf_course.datasets.bits_per_dim`). It starts with RealNVP's logit
    pre-processing (:class:`~nf_course.bijectors.Logit`), which maps the bounded pixel range
    onto the real line, where a Gaussian base is a sensible end point.

    Args:
        architecture: ``"glow"``: :class:`~nf_course.bijectors.Glow` (Kingma and Dhariwal
            2018), ``levels`` levels of squeeze and ``steps`` steps of ActNorm → invertible 1x1
            convolution → channel-split affine coupling, with factor-out between the levels.
            ``"realnvp"``: RealNVP's image architecture (Dinh et al. 2017) without factor-out:
            checkerboard couplings on the ``1×8×8`` image, a squeeze, channel-split couplings on
            ``4×4×4``, with alternating parities, and an unsqueeze back to ``1×8×8``; an ActNorm
            after each coupling stands in for RealNVP's batch normalization, which would make a
            sample's density depend on the rest of its batch.
        steps: Glow: flow steps per level (2 levels); RealNVP: couplings per scale (2 scales).
        hidden: channels of the couplings' hidden 3x3 convolutions.
        alpha: the logit pre-processing's margin (:class:`~nf_course.bijectors.Logit`).
        global_linear: end with one LU-parametrized linear map of all 64 dimensions (three
            squeezes to ``64×1×1``, an :class:`~nf_course.bijectors.InvConv1x1` and three
            unsqueezes), i.e. a full-covariance Gaussian base: the convolutions only see
            3x3 neighbourhoods, and a linear map is the cheapest way to couple distant pixels.
        levels: Glow only: its number of levels, 1 to 3 on 8x8 images (1: one squeeze to
            ``4×4×4`` and no factor-out, every step transforms all 64 numbers).
        split_prior: Glow only: the learned prior of the factored-out half
            (:class:`~nf_course.bijectors.Glow`'s ``split_prior``).
    """
    logit = Logit(bins=DIGITS_LEVELS, alpha=alpha)
    if architecture == "glow":
        body: nn.Module = Glow(
            1, levels=levels, steps_per_level=steps, hidden=hidden, split_prior=split_prior
        )
    elif architecture == "realnvp":
        if split_prior or levels != 2:
            raise ValueError(
                "digits_flow: levels and split_prior are Glow's (RealNVP's image flow has two "
                f"scales and factors nothing out), got levels={levels}, split_prior={split_prior}"
            )
        layers: list[nn.Module] = []
        for i in range(steps):
            layers += [
                AffineCoupling2d(1, hidden=hidden, mask="checkerboard", parity=i % 2),
                ActNorm(1),
            ]
        layers.append(Squeeze())
        for i in range(steps):
            layers += [
                AffineCoupling2d(4, hidden=hidden, mask="channel", parity=i % 2),
                ActNorm(4),
            ]
        layers.append(Inverse(Squeeze()))  # back to (1, 8, 8), the base's shape
        body = Compose(*layers)
    else:
        raise ValueError(
            f"digits_flow: unknown architecture {architecture!r}; choose from "
            f"{', '.join(repr(name) for name in ARCHITECTURES)}"
        )
    parts = [logit, body]
    if global_linear:
        unsqueeze = [Inverse(Squeeze()) for _ in range(3)]
        parts += [Squeeze(), Squeeze(), Squeeze(), InvConv1x1(64), *unsqueeze]
    return Flow(Compose(*parts), StandardNormal(DIGITS_SHAPE))


def planar_flow(layers: int = 32) -> Flow:
    """A fresh float32 flow on the plane: ``layers`` planar maps on the sampling side.

    ``Inverse(Planar(2, seed=k))`` for ``k = 0 .. layers - 1`` over a standard normal base:
    ``sample_and_log_prob`` uses the planar maps' closed form and the matrix determinant lemma,
    ``log_prob`` their numeric inverse.
    """
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"planar_flow: layers must be a positive integer, got {layers!r}")
    bijector = Compose(*[Inverse(Planar(2, seed=k)) for k in range(layers)])
    return Flow(bijector, StandardNormal(2)).float()


@dataclass(frozen=True)
class Checkpoint:
    """A trained flow shipped in ``nf_course/checkpoints/``.

    Attributes:
        filename: the file's name in ``nf_course/checkpoints/``.
        sha256: its SHA-256 hex digest.
        architecture: ``"glow"`` or ``"realnvp"`` (:func:`digits_flow`), or ``"planar"``
            (:func:`planar_flow`).
        options: the keyword arguments of that function.
        command: the command (from the repository root) that produced the file.
        metric: what ``value`` measures, e.g. ``"test bits/dim"``.
        value: the score that command printed for the file.
    """

    filename: str
    sha256: str
    architecture: str
    options: dict[str, float]
    command: str
    metric: str
    value: float


def _planar_checkpoint(
    target: str, layers: int, steps: int, sha256: str, reverse_kl: float
) -> Checkpoint:
    """The entry of ``planar_<target>_K<layers>.pt``, trained for ``steps`` steps."""
    return Checkpoint(
        filename=f"planar_{target}_K{layers}.pt",
        sha256=sha256,
        architecture="planar",
        options={"layers": layers},
        command=(
            f".venv/bin/python benchmarks/planar_energies.py --targets {target} "
            f"--layers {layers} --steps {steps} --save"
        ),
        metric=f"reverse KL to {target} (nats)",
        value=reverse_kl,
    )


_PLANAR_FITS: dict[tuple[str, int], tuple[int, str, float]] = {
    # (target, K): (training steps, SHA-256 of planar_<target>_K<K>.pt, reverse KL printed)
    ("U1", 2): (5000, "122e250f6079e72b2839b15dea5b8e02f6af22b521c43986a615d533e6bea562", 0.7215),
    ("U1", 8): (10000, "50bf4b24f42fa8aef9e9b4372469dd087294af4e1634fbf4fa4e2fe2fd2ce477", 0.105),
    ("U1", 32): (20000, "6b3c9c477a4b52a91325484c781c695b390550997d2129badd074d702e6f80aa", 0.0028),
    ("U2", 2): (5000, "c13893e39eb0531863ee8fb65c59cc7fb34dc68831e402273feb3597474377db", 0.6057),
    ("U2", 8): (10000, "f21d1fe639e98a5c3fcecc77219d30c477497fe5303f5ce11f58fe12a0d5e0ed", 0.2003),
    ("U2", 32): (20000, "52104e92919a3e5faa7dc22967a79456da202b701fec49cb7baaa4a4e13dc5b2", 0.0066),
    ("U3", 2): (5000, "dccfd93127d31c11d226c0cdf11ac2bf51530bfb12eeec9d7c13a22beac0923d", 1.1824),
    ("U3", 8): (10000, "a2c8a48628bea948a9c26d6216fb4a88918569d8a20bcbd98f4a8e311cdf1a2f", 0.4212),
    ("U3", 32): (50000, "be0939581d37c91ccbe8bceef1a44e9fb886536c50f65f201c5120a0e29cc380", 0.0077),
    ("U4", 2): (5000, "7f86c84dbc8c518b5ed83541ba0718eb165dbcf88ea542c4304fb22c14931298", 0.8389),
    ("U4", 8): (10000, "64539a9b4981e887fc152a16bfb89037db8e08402385eb80d8e9f99f28756d54", 0.3836),
    ("U4", 32): (50000, "f83dd70076b9b88c94e60f34376cdf3ab17f4a7e50b94c4c519aa6019d7acf19", 0.0133),
}

CHECKPOINTS: dict[str, Checkpoint] = {
    "glow_digits": Checkpoint(
        filename="glow_digits.pt",
        sha256="c618c18141ab4dff97751dd9b54e65e93257d4ba4868fcc7bcd465e8b78005c8",
        architecture="glow",
        options={"steps": 4, "hidden": 32, "alpha": 0.001},
        command=(
            ".venv/bin/python benchmarks/digits_bpd.py --architectures glow --threads 1 "
            "--alpha 0.001 --save"
        ),
        metric="test bits/dim",
        value=2.142,
    ),
    **{
        f"planar_{target}_K{layers}": _planar_checkpoint(target, layers, *fit)
        for (target, layers), fit in _PLANAR_FITS.items()
    },
}
"""The shipped checkpoints by name."""


def save_checkpoint(flow: nn.Module, filename: str) -> str:
    """Write ``flow.state_dict()`` to ``nf_course/checkpoints/<filename>``; return its SHA-256.

    The training commands of :data:`CHECKPOINTS` call this; the digest goes into the entry.
    """
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    data = buffer.getvalue()
    (Path(__file__).resolve().parent / "checkpoints" / filename).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_pretrained(name: str) -> Flow:
    """The flow ``name`` of :data:`CHECKPOINTS` with its trained parameters, in eval mode.

    Raises:
        KeyError: no checkpoint of that name.
        FileNotFoundError: the file is missing (e.g. an install without package data).
        ValueError: the file's SHA-256 does not match (corrupted or replaced file).
    """
    if name not in CHECKPOINTS:
        known = ", ".join(repr(key) for key in CHECKPOINTS) or "none"
        raise KeyError(f"load_pretrained: no checkpoint {name!r}; shipped: {known}")
    entry = CHECKPOINTS[name]
    path = resources.files("nf_course") / "checkpoints" / entry.filename
    if not path.is_file():
        raise FileNotFoundError(
            f"load_pretrained: {entry.filename} is missing from nf_course/checkpoints; "
            f"recreate it with: {entry.command}"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ValueError(
            f"load_pretrained: {entry.filename} has SHA-256 {digest}, expected {entry.sha256}; "
            f"the file is corrupted or was replaced; recreate it with: {entry.command}"
        )
    if entry.architecture == "planar":
        flow = planar_flow(**entry.options)
    else:
        flow = digits_flow(entry.architecture, **entry.options)
    with path.open("rb") as handle:
        state = torch.load(handle, map_location="cpu", weights_only=True)
    flow.load_state_dict(state)
    return flow.eval()
