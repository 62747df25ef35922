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
        loses={"07_test_fixed_point_raises": 1, "07_test_fixed_point_hidden": 1},
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

# The reference's iteration, rewritten as a whole by some mistakes below.
FIXED_POINT_LOOP = (
    "        x = z.clone()\n"
    "        for _ in range(max_iter):\n"
    "            r_x = residual(x)\n"
    "            error = float((x + r_x - z).abs().max())\n"
    "            if error <= tol:\n"
    "                return x\n"
    "            x = z - r_x\n"
)

# Mistakes that the broadened hidden tests catch (cold starts, gradients, far points, NaN).
MISTAKES += [
    Mistake(
        name="spectral_exact_sigma",
        description="σ from an exact SVD norm instead of the power iteration's σ̂ = uᵀWv",
        cell="07_spectral",
        old="sigma = u @ weight @ v",
        new="sigma = torch.linalg.matrix_norm(weight, ord=2)",
        loses={"07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="spectral_sigma_as_float",
        description="σ̂ turned into a Python float: W̃ = W / max(1, σ̂/c) has the wrong gradient",
        cell="07_spectral",
        old="sigma = u @ weight @ v\n    return weight / torch.clamp(sigma / bound, min=1.0)",
        new="sigma = float(u @ weight @ v)\n    return weight / max(1.0, sigma / bound)",
        loses={"07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="spectral_grad_through_iteration",
        description="the power iteration runs with gradients: u and v are not held constant",
        cell="07_spectral",
        old=(
            "    with torch.no_grad():\n"
            "        for _ in range(n_iterations):\n"
            "            v = torch.nn.functional.normalize(weight.T @ u, dim=0)\n"
            "            u.copy_(torch.nn.functional.normalize(weight @ v, dim=0))\n"
        ),
        new=(
            "    for _ in range(n_iterations):\n"
            "        v = torch.nn.functional.normalize(weight.T @ u, dim=0)\n"
            "        u.copy_(torch.nn.functional.normalize(weight @ v, dim=0))\n"
        ),
        loses={"07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="spectral_ignores_n_iterations",
        description="always 20 power steps, whatever n_iterations says",
        cell="07_spectral",
        old="for _ in range(n_iterations):",
        new="for _ in range(20):",
        loses={"07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="spectral_divides_weight_in_place",
        description="W divided in place (weight.div_): the layer's own parameter shrinks",
        cell="07_spectral",
        old="return weight / torch.clamp(sigma / bound, min=1.0)",
        new="return weight.div_(torch.clamp(sigma / bound, min=1.0))",
        loses={"07_test_spectral_reference": 1, "07_test_spectral_hidden": 1},
    ),
    Mistake(
        name="fixed_point_mean_error",
        description="stops when the mean of |x + r(x) - z| is within tol, not its largest entry",
        cell="07_fixed_point",
        old="error = float((x + r_x - z).abs().max())",
        new="error = float((x + r_x - z).abs().mean())",
        loses={"07_test_fixed_point": 1, "07_test_fixed_point_hidden": 1},
    ),
    Mistake(
        name="fixed_point_relative_tolerance",
        description="tolerance scaled by max(1, ‖z‖∞): far-away points stop too early",
        cell="07_fixed_point",
        old="if error <= tol:",
        new="if error <= tol * max(1.0, float(z.abs().max())):",
        loses={"07_test_fixed_point": 1, "07_test_fixed_point_hidden": 1},
    ),
    Mistake(
        name="fixed_point_runs_all_steps",
        description="always runs max_iter steps and checks the tolerance only at the end",
        cell="07_fixed_point",
        old="            if error <= tol:\n                return x\n            x = z - r_x\n",
        new="            x = z - r_x\n        if error <= tol:\n            return x\n",
        loses={"07_test_fixed_point_hidden": 1},
    ),
    Mistake(
        name="fixed_point_while_stops_on_nan",
        description="`while error > tol` loop: a NaN error ends it and a diverged x is returned",
        cell="07_fixed_point",
        old=FIXED_POINT_LOOP,
        new=(
            "        x = z.clone()\n"
            "        error = float((x + residual(x) - z).abs().max())\n"
            "        steps = 0\n"
            "        while error > tol and steps < max_iter:\n"
            "            x = z - residual(x)\n"
            "            error = float((x + residual(x) - z).abs().max())\n"
            "            steps += 1\n"
            "        if steps < max_iter:\n"
            "            return x\n"
        ),
        loses={"07_test_fixed_point_hidden": 1},
    ),
    Mistake(
        name="fixed_point_updates_z_in_place",
        description="x = z without a copy, then x -= …: z itself is overwritten",
        cell="07_fixed_point",
        old=FIXED_POINT_LOOP,
        new=(
            "        x = z\n"
            "        for _ in range(max_iter):\n"
            "            r_x = residual(x)\n"
            "            step = x + r_x - z\n"
            "            error = float(step.abs().max())\n"
            "            if error <= tol:\n"
            "                return x\n"
            "            x -= step\n"
        ),
        loses={"07_test_fixed_point": 1, "07_test_fixed_point_hidden": 1},
    ),
    Mistake(
        name="series_elementwise_power",
        description="J**k taken elementwise (power * jacobian): right only for triangular J",
        cell="07_series",
        old="power = power @ jacobian",
        new="power = power * jacobian",
        loses={
            "07_test_series_bound": 1,
            "07_test_series_exact": 1,
            "07_test_series_hidden": 1,
        },
    ),
    Mistake(
        name="series_trace_detached",
        description="each trace detached from the graph: right values, no gradient for training",
        cell="07_series",
        old="trace = torch.diagonal(power, dim1=1, dim2=2).sum(dim=1)",
        new="trace = torch.diagonal(power, dim1=1, dim2=2).sum(dim=1).detach()",
        loses={"07_test_series_hidden": 1},
    ),
]
