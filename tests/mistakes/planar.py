"""Wrong submissions of assignment 03 (planar flow), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="u_hat_divides_by_norm",
        description="û built with ‖w‖ instead of ‖w‖²: wᵀû can fall below -1 for a short w",
        cell="03_planar_forward",
        old="self.w / (self.w @ self.w)",
        new="self.w / torch.linalg.norm(self.w)",
        loses={"03_test_planar_adversarial": 2},
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
]
