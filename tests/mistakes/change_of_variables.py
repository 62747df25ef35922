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
    # Below: mistakes that only the broader hidden inputs of issue 11 catch (most of them
    # scored 10/10 before), or that lose points in more than one task.
    Mistake(
        name="affine_divides_by_abs_scale",
        description="z = (x - c)/|a|: right for bases symmetric about 0, wrong for the others",
        cell="01_affine_1d",
        old="z = (x - shift) / scale",
        new="z = (x - shift) / abs(scale)",
        loses={"01_test_affine_1d_hidden": 1},
    ),
    Mistake(
        name="affine_ignores_base",
        description="the standard normal hard-coded instead of calling base_log_prob",
        cell="01_affine_1d",
        old="return base_log_prob(z) - math.log(abs(scale))",
        new="return torch.distributions.Normal(0.0, 1.0).log_prob(z) - math.log(abs(scale))",
        loses={"01_test_affine_1d": 1, "01_test_affine_1d_hidden": 1},
    ),
    Mistake(
        name="affine_adds_shift",
        description="z = (x + c)/a: the shift undone with the wrong sign (visible test: c = 0)",
        cell="01_affine_1d",
        old="z = (x - shift) / scale",
        new="z = (x + shift) / scale",
        loses={"01_test_affine_1d_hidden": 1},
    ),
    Mistake(
        name="affine_in_place",
        description="x shifted and scaled in place: the caller's tensor is overwritten",
        cell="01_affine_1d",
        old="z = (x - shift) / scale\n",
        new="x -= shift\n    x /= scale\n    z = x\n",
        loses={"01_test_affine_1d_hidden": 1},
    ),
    Mistake(
        name="exp_masks_in_place",
        description="x <= 0 replaced by 1 in the caller's tensor before taking the log",
        cell="01_exp_normal",
        old="z = torch.log(torch.where(positive, x, torch.ones_like(x)))",
        new="x[~positive] = 1.0\n    z = torch.log(x)",
        loses={"01_test_exp_normal_hidden": 1},
    ),
    Mistake(
        name="exp_log_zero_outside",
        description="log-density 0 (density 1) instead of -inf where x <= 0",
        cell="01_exp_normal",
        old="torch.full_like(x, -math.inf)",
        new="torch.zeros_like(x)",
        loses={"01_test_exp_normal_hidden": 1},
    ),
    Mistake(
        name="exp_zero_counts_as_positive",
        description="x >= 0 as the support: log 0 = -inf makes the density NaN at x = 0",
        cell="01_exp_normal",
        old="positive = x > 0",
        new="positive = x >= 0",
        loses={"01_test_exp_normal_hidden": 1},
    ),
    Mistake(
        name="log_det_from_det",
        description="log(det A) without the absolute value: NaN for a negative determinant",
        cell="01_affine_bijector",
        old="log_det = -torch.linalg.slogdet(self.A).logabsdet",
        new="log_det = -torch.log(torch.det(self.A))",
        loses={
            "01_test_affine_bijector_invertible": 1,  # [finite]: the log-det is NaN
            "01_test_affine_bijector_log_det": 1,
            "01_test_affine_bijector_hidden": 2,
            "01_test_linear_log_density": 1,
            "01_test_linear_log_density_hidden": 1,
        },
    ),
    Mistake(
        name="forward_log_det_detached",
        description="the forward log-det computed from A.data: right values, no gradient in A",
        cell="01_affine_bijector",
        old="log_det = -torch.linalg.slogdet(self.A).logabsdet",
        new="log_det = -torch.linalg.slogdet(self.A.data).logabsdet",
        loses={"01_test_affine_bijector_hidden": 2},
    ),
    Mistake(
        name="inverse_log_det_no_grad",
        description="the inverse log-det computed under torch.no_grad (sampling cannot train A)",
        cell="01_affine_bijector",
        old="        log_det = torch.linalg.slogdet(self.A).logabsdet\n",
        new=(
            "        with torch.no_grad():\n"
            "            log_det = torch.linalg.slogdet(self.A).logabsdet\n"
        ),
        loses={"01_test_affine_bijector_hidden": 2},
    ),
    Mistake(
        name="cached_inverse_matrix",
        description="A⁻¹ computed once in __init__: stale as soon as A is trained",
        cell="01_affine_bijector",
        old=(
            "        self.b = torch.nn.Parameter(b.clone())\n"
            "\n"
            "    def forward(self, x):\n"
            '        """x (B, D) -> (z (B, D), log_det (B,)), the normalizing direction."""\n'
            "        z = torch.linalg.solve(self.A, (x - self.b).T).T\n"
        ),
        new=(
            "        self.b = torch.nn.Parameter(b.clone())\n"
            "        self.A_inv = torch.linalg.inv(A)\n"
            "\n"
            "    def forward(self, x):\n"
            '        """x (B, D) -> (z (B, D), log_det (B,)), the normalizing direction."""\n'
            "        z = (x - self.b) @ self.A_inv.T\n"
        ),
        loses={"01_test_affine_bijector_hidden": 2},
    ),
    Mistake(
        name="log_det_not_expanded",
        description="one log-det for the whole batch (a 0-d tensor) instead of one per sample",
        cell="01_affine_bijector",
        old="return z, log_det.expand(x.shape[0])",
        new="return z, log_det",
        loses={"01_test_affine_bijector_log_det": 1, "01_test_affine_bijector_hidden": 2},
    ),
    Mistake(
        name="forward_squeezes_batch",
        description="squeeze() after a batched solve: one sample loses its batch dimension",
        cell="01_affine_bijector",
        old="z = torch.linalg.solve(self.A, (x - self.b).T).T",
        new="z = torch.linalg.solve(self.A, (x - self.b).unsqueeze(-1)).squeeze()",
        loses={"01_test_affine_bijector_hidden": 2, "01_test_linear_log_density_hidden": 1},
    ),
    Mistake(
        name="density_hard_codes_2d",
        description="the normalizing constant written for D = 2, the dimension of the visible test",
        cell="01_linear_log_density",
        old="0.5 * z.shape[1] * math.log(2 * math.pi)",
        new="math.log(2 * math.pi)",
        loses={"01_test_linear_log_density_hidden": 1},
    ),
    Mistake(
        name="density_squeezed",
        description="squeeze() on the result: a batch of one sample loses its batch dimension",
        cell="01_linear_log_density",
        old="return log_base + log_det",
        new="return (log_base + log_det).squeeze()",
        loses={"01_test_linear_log_density_hidden": 1},
    ),
]
