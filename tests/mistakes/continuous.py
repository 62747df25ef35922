"""Wrong submissions of assignment 08 (continuous-in-time flows), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="divergence_sums_whole_jacobian",
        description="each backward pass adds its whole Jacobian row, not only its diagonal entry",
        cell="08_divergence",
        old="diagonal.append(row[:, i])",
        new="diagonal.append(row.sum(dim=1))",
        loses={"08_test_divergence": 1, "08_test_divergence_hidden": 2},
    ),
    Mistake(
        name="hutchinson_uncentred_noise",
        description="Gaussian noise drawn with torch.rand: uniform on [0, 1), not centred",
        cell="08_hutchinson",
        old="torch.randn(z.shape, generator=generator, dtype=z.dtype)",
        new="torch.rand(z.shape, generator=generator, dtype=z.dtype)",
        loses={"08_test_hutchinson": 1, "08_test_hutchinson_hidden": 2},
    ),
    Mistake(
        name="hutchinson_epsilon_on_one_side",
        description="returns the sum of εᵀJ, forgetting the second ε: an estimate of 1ᵀJᵀε, mean 0",
        cell="08_hutchinson",
        old="return (vjp * epsilon).sum(dim=1)",
        new="return vjp.sum(dim=1)",
        loses={"08_test_hutchinson": 1, "08_test_hutchinson_hidden": 2},
    ),
    Mistake(
        name="rk4_equal_weights",
        description="RK4's slopes averaged with equal weights 1/4: only a second-order method",
        cell="08_cnf",
        old="(a + 2 * b + 2 * c + d) / 6",
        new="(a + b + c + d) / 4",
        loses={"08_test_cnf_rk4": 1, "08_test_cnf_hidden": 1},
    ),
    Mistake(
        name="inverse_integrates_forward_in_time",
        description="inverse solves from t0 to t1 again instead of from t1 back to t0",
        cell="08_cnf",
        old="z, self.t1, self.t0, *solver",
        new="z, self.t0, self.t1, *solver",
        loses={"08_test_cnf_round_trip": 1, "08_test_cnf_hidden": 1},
    ),
]
