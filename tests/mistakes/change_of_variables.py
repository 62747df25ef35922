"""Wrong submissions of assignment 01 (change of variables), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="scale_without_abs",
        description="log|a| written as log(a): a negative scale raises (math domain error)",
        cell="01_affine_1d",
        old="math.log(abs(scale))",
        new="math.log(scale)",
        loses={"01_test_affine_1d_hidden": 1},
    ),
    Mistake(
        name="affine_missing_jacobian",
        description="the density of Z evaluated at (x - c)/a, without the factor 1/|a|",
        cell="01_affine_1d",
        old="return base_log_prob(z) - math.log(abs(scale))",
        new="return base_log_prob(z)",
        loses={"01_test_affine_1d": 1, "01_test_affine_1d_hidden": 1},
    ),
    Mistake(
        name="exp_missing_jacobian",
        description="log N(log x) without the term -log x of the derivative of log",
        cell="01_exp_normal",
        old="- 0.5 * math.log(2 * math.pi) - z",
        new="- 0.5 * math.log(2 * math.pi)",
        loses={"01_test_exp_normal": 1, "01_test_exp_normal_hidden": 1},
    ),
    Mistake(
        name="exp_density_outside_support",
        description="no -inf for x <= 0: the density is positive where X never goes",
        cell="01_exp_normal",
        old="return torch.where(positive, log_p, torch.full_like(x, -math.inf))",
        new="return log_p",
        loses={"01_test_exp_normal_hidden": 1},
    ),
    Mistake(
        name="forward_log_det_sign",
        description="forward returns +log|det A|, the log-det of the generative direction",
        cell="01_affine_bijector",
        old="log_det = -torch.linalg.slogdet(self.A).logabsdet",
        new="log_det = torch.linalg.slogdet(self.A).logabsdet",
        loses={
            "01_test_affine_bijector_log_det": 1,
            "01_test_affine_bijector_hidden": 2,
            "01_test_linear_log_density": 1,
            "01_test_linear_log_density_hidden": 1,
        },
    ),
    Mistake(
        name="inverse_transposed_matrix",
        description="inverse computes z @ A + b, i.e. Aᵀz + b, instead of A z + b",
        cell="01_affine_bijector",
        old="x = z @ self.A.T + self.b",
        new="x = z @ self.A + self.b",
        loses={"01_test_affine_bijector_invertible": 1, "01_test_affine_bijector_hidden": 2},
    ),
    Mistake(
        name="density_adds_volume",
        description="log p_X = log p_Z(z) - log_det: the change of variables with the wrong sign",
        cell="01_linear_log_density",
        old="return log_base + log_det",
        new="return log_base - log_det",
        loses={"01_test_linear_log_density": 1, "01_test_linear_log_density_hidden": 1},
    ),
]
