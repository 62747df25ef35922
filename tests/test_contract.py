"""The contract of API.md for every bijector ``nf_course.bijectors`` exports: built as ``Cls(dim)``
or ``Cls(channels)`` with defaults for everything else, then perturbed, it passes every check.

Like ``torch.distributions``' ``ALL_TRANSFORMS`` registry, the list comes from the package
itself: a new bijector is covered by being exported. The family test files keep the
family-specific mathematics and the non-default configurations."""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers import perturbed, randn

import nf_course.bijectors as bijectors
from nf_course import Bijector
from nf_course.checks import check_bijector

DIM = 3
CHANNELS = 2

EXACT_SOLVE = {"rtol": 1e-10, "atol": 1e-10}

# Bijectors whose domain or construction the general rule does not cover, with the reason.
SPECIAL = {
    # no argument: it only reshapes
    "Squeeze": (lambda: bijectors.Squeeze(), lambda: randn(4, CHANNELS, 4, 4, seed=1)),
    # multi-scale: two squeezes need 8x8 images
    "Glow": (lambda: bijectors.Glow(CHANNELS), lambda: randn(3, CHANNELS, 8, 8, seed=1)),
    # the dequantized data live in [0, K]
    "Logit": (lambda: bijectors.Logit(), lambda: 0.5 + 16 * randn(6, DIM, seed=1).sigmoid()),
    # ODE solves: accurate to the solver's tolerance, which must be below the checker's
    "CNF": (lambda: bijectors.CNF(DIM, **EXACT_SOLVE), lambda: randn(6, DIM, seed=1)),
    # a stochastic trace: its exact mode is the one whose values can be checked
    "FFJORD": (
        lambda: bijectors.FFJORD(DIM, trace="exact", **EXACT_SOLVE),
        lambda: randn(6, DIM, seed=1),
    ),
}


def exported_bijectors() -> list[str]:
    return sorted(
        name
        for name in bijectors.__all__
        if inspect.isclass(getattr(bijectors, name))
        and issubclass(getattr(bijectors, name), Bijector)
    )


def test_every_exported_bijector_is_built_as_the_contract_says():
    for name in exported_bijectors():
        cls = getattr(bijectors, name)
        parameters = list(inspect.signature(cls).parameters.values())
        positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        options = [p for p in parameters if p.kind is p.KEYWORD_ONLY]
        if name in SPECIAL:
            continue
        assert [p.name for p in positional] in (["dim"], ["channels"]), name
        assert all(p.default is not p.empty for p in options), f"{name}: an option has no default"


@pytest.mark.parametrize("name", exported_bijectors())
def test_every_exported_bijector_passes_the_checker_once_perturbed(name: str) -> None:
    if name in SPECIAL:
        make, data = SPECIAL[name]
    else:
        cls = getattr(bijectors, name)
        first = next(iter(inspect.signature(cls).parameters))
        make = lambda: cls(DIM if first == "dim" else CHANNELS)  # noqa: E731
        data = (
            (lambda: randn(6, DIM, seed=1))
            if first == "dim"
            else (lambda: randn(4, CHANNELS, 4, 4, seed=1))
        )
    torch.manual_seed(0)  # layers that initialize from the global generator
    layer = perturbed(make(), seed=2, scale=0.1)
    x = data()
    layer.forward(x)  # data-dependent initialization (ActNorm) on the first batch, as in training
    check_bijector(layer, x)
