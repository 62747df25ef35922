"""Wrong submissions of assignment 03 (planar flow), each with the points it loses."""

from mistakes import Mistake

BISECTION = """    with torch.no_grad():
        low, high = gamma - c.abs(), gamma + c.abs()
        for _ in range(100):
            middle = (low + high) / 2
            above = middle + c * torch.tanh(middle + self.b) - gamma > 0
            high = torch.where(above, middle, high)
            low = torch.where(above, low, middle)
        alpha = (low + high) / 2
"""

MISTAKES = [
    Mistake(
        name="u_hat_divides_by_norm",
        description="û built with ‖w‖ instead of ‖w‖²: wᵀû can fall below -1 for a short w",
        cell="03_planar_forward",
        old="self.w / (self.w @ self.w)",
        new="self.w / torch.linalg.norm(self.w)",
        loses={"03_test_planar_adversarial": 2, "03_test_planar_hidden": 4},
    ),
    Mistake(
        name="log_det_without_tanh_derivative",
        description="log(1 + wᵀû): the factor tanh'(wᵀx + b) of ψ(x) is missing",
        cell="03_planar_forward",
        old="torch.log1p(h_prime * (self.w @ self.u_hat()))",
        new="torch.log1p(self.w @ self.u_hat()).expand(alpha.shape[0])",
        loses={"03_test_forward": 1, "03_test_planar_hidden": 4},
    ),
    Mistake(
        name="inverse_without_newton_step",
        description="the bisection result used as it is: the inverse has no gradient through α",
        cell="03_planar_inverse",
        old="    alpha = alpha - (alpha + c * tanh - gamma) / (1 + c * (1 - tanh**2))\n",
        new="",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="inverse_bisection_flipped",
        description="bisection keeps the wrong half of the bracket: it converges to an end",
        cell="03_planar_inverse",
        old="above = middle + c * torch.tanh(middle + self.b) - gamma > 0",
        new="above = middle + c * torch.tanh(middle + self.b) - gamma < 0",
        loses={"03_test_inverse": 2, "03_test_planar_hidden": 4},
    ),
    Mistake(
        name="inverse_log_det_sign",
        description="inverse returns the forward log-det instead of its negative",
        cell="03_planar_inverse",
        old="return x, -self.log_abs_det(alpha)",
        new="return x, self.log_abs_det(alpha)",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="m_without_minus_one",
        description="m(a) = log(1 + eᵃ) without the -1: still invertible, but not the stated û",
        cell="03_planar_forward",
        old="m = torch.nn.functional.softplus(w_dot_u) - 1",
        new="m = torch.nn.functional.softplus(w_dot_u)",
        loses={"03_test_planar_adversarial": 2},
    ),
    Mistake(
        name="u_hat_adds_m_not_the_difference",
        description="û = u + m(wᵀu) w / ‖w‖²: the term -wᵀu of the correction is missing",
        cell="03_planar_forward",
        old="(m - w_dot_u) * self.w",
        new="m * self.w",
        loses={
            "03_test_u_hat": 1,
            "03_test_planar_adversarial": 2,
            "03_test_inverse": 2,
            "03_test_planar_hidden": 4,
        },
    ),
    Mistake(
        name="log_det_tanh_without_bias",
        description="tanh'(wᵀx) in the log-det: the bias b is left out of the derivative",
        cell="03_planar_forward",
        old="h_prime = 1 - torch.tanh(alpha + self.b) ** 2",
        new="h_prime = 1 - torch.tanh(alpha) ** 2",
        loses={"03_test_forward": 1, "03_test_planar_hidden": 4},
    ),
    Mistake(
        name="log_det_with_u_not_u_hat",
        description="the log-det uses wᵀu instead of wᵀû",
        cell="03_planar_forward",
        old="torch.log1p(h_prime * (self.w @ self.u_hat()))",
        new="torch.log1p(h_prime * (self.w @ self.u))",
        loses={
            "03_test_forward": 1,
            "03_test_planar_adversarial": 2,
            "03_test_inverse": 2,
            "03_test_planar_hidden": 4,
        },
    ),
    Mistake(
        name="forward_moves_along_u",
        description="z = x + u tanh(wᵀx + b): the raw u instead of û in the map",
        cell="03_planar_forward",
        old="torch.tanh(alpha + self.b).unsqueeze(1) * self.u_hat()",
        new="torch.tanh(alpha + self.b).unsqueeze(1) * self.u",
        loses={
            "03_test_forward": 1,
            "03_test_planar_adversarial": 2,
            "03_test_inverse": 2,
            "03_test_planar_hidden": 4,
        },
    ),
    Mistake(
        name="inverse_plain_newton",
        description="Newton's method from α = γ without a bracket: it cycles once wᵀû is large",
        cell="03_planar_inverse",
        old=BISECTION,
        new="""    with torch.no_grad():
        alpha = gamma.clone()
        for _ in range(50):
            tanh = torch.tanh(alpha + self.b)
            alpha = alpha - (alpha + c * tanh - gamma) / (1 + c * (1 - tanh**2))
""",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="bracket_of_half_width_one",
        description="bracket [γ - 1, γ + 1] from |tanh| ≤ 1, forgetting the factor c",
        cell="03_planar_inverse",
        old="low, high = gamma - c.abs(), gamma + c.abs()",
        new="low, high = gamma - 1, gamma + 1",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="bracket_with_signed_c",
        description="bracket [γ - c, γ + c] with c instead of |c|: upside down when wᵀû < 0",
        cell="03_planar_inverse",
        old="low, high = gamma - c.abs(), gamma + c.abs()",
        new="low, high = gamma - c, gamma + c",
        loses={"03_test_inverse": 2, "03_test_planar_hidden": 4},
    ),
    Mistake(
        name="newton_step_sign",
        description="the final Newton step adds r/r': the value is right, its derivatives are not",
        cell="03_planar_inverse",
        old="alpha = alpha - (alpha + c * tanh - gamma)",
        new="alpha = alpha + (alpha + c * tanh - gamma)",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="newton_slope_without_c",
        description="r'(α) written 1 + tanh'(α + b), without c: wrong derivatives of the inverse",
        cell="03_planar_inverse",
        old="/ (1 + c * (1 - tanh**2))",
        new="/ (1 + (1 - tanh**2))",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="c_and_gamma_under_no_grad",
        description="c and γ computed inside torch.no_grad(): the Newton step carries no gradient",
        cell="03_planar_inverse",
        old="""    c = self.w @ self.u_hat()
    gamma = z @ self.w
    with torch.no_grad():
""",
        new="""    with torch.no_grad():
        c = self.w @ self.u_hat()
        gamma = z @ self.w
""",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="inverse_log_det_at_z",
        description="the inverse's log-det evaluated at γ = wᵀz instead of at α = wᵀx",
        cell="03_planar_inverse",
        old="return x, -self.log_abs_det(alpha)",
        new="return x, -self.log_abs_det(gamma)",
        loses={"03_test_planar_hidden": 4},
    ),
    Mistake(
        name="inverse_x_without_bias",
        description="x = z - û tanh(α): the bias left out of the final step",
        cell="03_planar_inverse",
        old="x = z - torch.tanh(alpha + self.b).unsqueeze(1) * self.u_hat()",
        new="x = z - torch.tanh(alpha).unsqueeze(1) * self.u_hat()",
        loses={"03_test_inverse": 2, "03_test_planar_hidden": 4},
    ),
]
