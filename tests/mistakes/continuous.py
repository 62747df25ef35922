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

# Mistakes that the broadened hidden tests catch (generator use, exact schemes, derivatives).
MISTAKES += [
    Mistake(
        name="divergence_mean_over_batch",
        description="gradient of the batch mean of f_i: every row is divided by B",
        cell="08_divergence",
        old="torch.autograd.grad(dz[:, i].sum(), z, retain_graph=True)",
        new="torch.autograd.grad(dz[:, i].mean(), z, retain_graph=True)",
        loses={"08_test_divergence": 1, "08_test_divergence_hidden": 2},
    ),
    Mistake(
        name="divergence_without_retain_graph",
        description="retain_graph left out: the second backward pass finds the graph freed",
        cell="08_divergence",
        old="torch.autograd.grad(dz[:, i].sum(), z, retain_graph=True)",
        new="torch.autograd.grad(dz[:, i].sum(), z)",
        loses={"08_test_divergence": 1, "08_test_divergence_hidden": 2},
    ),
    Mistake(
        name="hutchinson_rademacher_with_zeros",
        description="Rademacher noise drawn from {-1, 0, 1}: E[εεᵀ] = (2/3) I, biased",
        cell="08_hutchinson",
        old=(
            "signs = torch.randint(0, 2, z.shape, generator=generator)\n"
            "        epsilon = (2 * signs - 1).to(z.dtype)"
        ),
        new=(
            "signs = torch.randint(-1, 2, z.shape, generator=generator)\n"
            "        epsilon = signs.to(z.dtype)"
        ),
        loses={"08_test_hutchinson": 1, "08_test_hutchinson_hidden": 2},
    ),
    Mistake(
        name="hutchinson_seeds_global_rng",
        description="seeds the global generator with torch.manual_seed(0) and ignores `generator`",
        cell="08_hutchinson",
        old="epsilon = torch.randn(z.shape, generator=generator, dtype=z.dtype)",
        new="torch.manual_seed(0)\n        epsilon = torch.randn(z.shape, dtype=z.dtype)",
        loses={"08_test_hutchinson_hidden": 2},
    ),
    Mistake(
        name="hutchinson_one_noise_for_the_batch",
        description="one ε of shape (D,) shared by every sample of the batch",
        cell="08_hutchinson",
        old="epsilon = torch.randn(z.shape, generator=generator, dtype=z.dtype)",
        new="epsilon = torch.randn(z.shape[1], generator=generator, dtype=z.dtype).expand(z.shape)",
        loses={"08_test_hutchinson": 1, "08_test_hutchinson_hidden": 2},
    ),
    Mistake(
        name="hutchinson_unknown_noise_is_gaussian",
        description="every noise name other than 'rademacher' silently means Gaussian",
        cell="08_hutchinson",
        old='if noise == "gaussian":',
        new='if noise != "rademacher":',
        loses={"08_test_hutchinson_hidden": 2},
    ),
    Mistake(
        name="euler_log_det_at_next_point",
        description="Euler's log-det increment uses the divergence at the new point z_{k+1}",
        cell="08_cnf",
        old="return z + h * field(t, z), h * div(t, z)",
        new="z_next = z + h * field(t, z)\n    return z_next, h * div(t + h, z_next)",
        loses={"08_test_cnf_hidden": 1},
    ),
    Mistake(
        name="rk4_stages_at_time_t",
        description="RK4's inner stages evaluate the field at t instead of t + h/2 and t + h",
        cell="08_cnf",
        old=(
            "    k2, d2 = field(t + h / 2, y2), div(t + h / 2, y2)\n"
            "    y3 = z + h / 2 * k2\n"
            "    k3, d3 = field(t + h / 2, y3), div(t + h / 2, y3)\n"
            "    y4 = z + h * k3\n"
            "    k4, d4 = field(t + h, y4), div(t + h, y4)\n"
        ),
        new=(
            "    k2, d2 = field(t, y2), div(t, y2)\n"
            "    y3 = z + h / 2 * k2\n"
            "    k3, d3 = field(t, y3), div(t, y3)\n"
            "    y4 = z + h * k3\n"
            "    k4, d4 = field(t, y4), div(t, y4)\n"
        ),
        loses={"08_test_cnf_round_trip": 1, "08_test_cnf_hidden": 1},
    ),
    Mistake(
        name="rk4_log_det_from_first_stage",
        description="RK4 for z but the log-det increment from the first stage only (h·div(z_k))",
        cell="08_cnf",
        old="stages = ((k1, k2, k3, k4), (d1, d2, d3, d4))",
        new="stages = ((k1, k2, k3, k4), (d1, d1, d1, d1))",
        loses={"08_test_cnf_round_trip": 1, "08_test_cnf_hidden": 1},
    ),
    Mistake(
        name="integrate_times_from_zero",
        description="step times k·h instead of t_start + k·h: right only for forward from 0",
        cell="08_cnf",
        old="step(field, div, t_start + k * h, z, h)",
        new="step(field, div, k * h, z, h)",
        loses={"08_test_cnf_round_trip": 1, "08_test_cnf_hidden": 1},
    ),
    Mistake(
        name="forward_under_no_grad",
        description="forward integrates under torch.no_grad() to save memory: nothing trains",
        cell="08_cnf",
        old="        z, log_det = integrate(self.field, self.div, x, self.t0, self.t1, *solver)\n",
        new=(
            "        with torch.no_grad():\n"
            "            z, log_det = integrate(\n"
            "                self.field, self.div, x, self.t0, self.t1, *solver\n"
            "            )\n"
        ),
        loses={"08_test_cnf_hidden": 1},
    ),
    Mistake(
        name="rk4_updates_state_in_place",
        description="z += h·dz in rk4_step: the caller's x is overwritten by the first step",
        cell="08_cnf",
        old="    return z + h * dz, h * dl",
        new="    z += h * dz\n    return z, h * dl",
        loses={"08_test_cnf_rk4": 1, "08_test_cnf_hidden": 1},
    ),
]
