"""Wrong submissions of assignment 07 (invertible residual flows), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="spectral_u_rebound",
        description="u = … inside the function rebinds a local name: the caller's u never moves",
        cell="07_spectral",
        old="u.copy_(torch.nn.functional.normalize(weight @ v, dim=0))",
        new="u = torch.nn.functional.normalize(weight @ v, dim=0)",
        loses={"07_test_spectral_u": 1, "07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="spectral_frobenius_norm",
        description="W divided by its Frobenius norm ‖W‖_F ≥ σ(W): within the bound, but too small",
        cell="07_spectral",
        old="sigma = u @ weight @ v",
        new="sigma = torch.linalg.norm(weight)",
        loses={"07_test_spectral_reference": 1, "07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="spectral_always_rescaled",
        description="W / (σ̂/c) without max(1, ·): a weight below the bound is blown up to c",
        cell="07_spectral",
        old="torch.clamp(sigma / bound, min=1.0)",
        new="(sigma / bound)",
        loses={"07_test_spectral_reference": 1, "07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="fixed_point_sign",
        description="x ← z + r(x): a fixed point of the wrong equation x - r(x) = z",
        cell="07_fixed_point",
        old="x = z - r_x",
        new="x = z + r_x",
        loses={"07_test_fixed_point": 1, "07_test_fixed_point_hidden": 1},
    ),
    Mistake(
        name="fixed_point_silent",
        description="after max_iter steps the last iterate is returned instead of an error",
        cell="07_fixed_point",
        old="x = z - r_x\n    raise RuntimeError(",
        new="x = z - r_x\n    return x\n    raise RuntimeError(",
        loses={"07_test_fixed_point_raises": 1},
    ),
    Mistake(
        name="series_sign_pattern",
        description="terms weighted (-1)^k instead of (-1)^(k+1): the series of -log det",
        cell="07_series",
        old="(-1) ** (k + 1) * trace / k",
        new="(-1) ** k * trace / k",
        loses={
            "07_test_series_bound": 1,
            "07_test_series_exact": 1,
            "07_test_series_hidden": 1,
        },
    ),
    Mistake(
        name="series_without_1_over_k",
        description="the factor 1/k of the logarithm's series is left out",
        cell="07_series",
        old="(-1) ** (k + 1) * trace / k",
        new="(-1) ** (k + 1) * trace",
        loses={
            "07_test_series_bound": 1,
            "07_test_series_exact": 1,
            "07_test_series_hidden": 1,
        },
    ),
]
