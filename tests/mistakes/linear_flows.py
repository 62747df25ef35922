"""Wrong submissions of assignment 02 (linear flows), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="permutation_applied_twice",
        description="inverse applies perm again instead of the inverse permutation",
        cell="02_permutation",
        old="z[:, torch.argsort(self.perm)]",
        new="z[:, self.perm]",
        loses={"02_test_permutation": 1, "02_test_permutation_hidden": 1},
    ),
    Mistake(
        name="permutation_log_det_scalar",
        description="forward returns a single 0 as log_det instead of one zero per sample",
        cell="02_permutation",
        old="x.new_zeros(x.shape[0])",
        new="torch.tensor(0.0)",
        loses={"02_test_permutation": 1, "02_test_permutation_hidden": 1},
    ),
    Mistake(
        name="permutation_accepts_anything",
        description="no check of perm: a repeated or out-of-range index is silently accepted",
        cell="02_permutation",
        old=(
            "        if perm.dim() != 1 or not torch.equal(torch.sort(perm).values, "
            "torch.arange(len(perm))):\n"
            "            raise ValueError(\n"
            '                f"perm must be a permutation of 0, ..., {len(perm) - 1}, '
            'got {perm.tolist()}"\n'
            "            )\n"
        ),
        new="",
        loses={"02_test_permutation_errors": 1, "02_test_permutation_errors_hidden": 1},
    ),
    Mistake(
        name="lu_unmasked_factors",
        description="L and U used as stored: training fills their other triangles and diagonals",
        cell="02_linear_lu",
        old="L = torch.tril(self.L, diagonal=-1) + eye",
        new="L = self.L + eye",
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_sign_dropped",
        description="the diagonal of U built as exp(log_s), forgetting the fixed signs sign_s",
        cell="02_linear_lu",
        old="torch.diag(self.sign_s * torch.exp(self.log_s))",
        new="torch.diag(torch.exp(self.log_s))",
        loses={"02_test_linear_lu_weight": 1, "02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_log_det_not_summed",
        description="log_det returned as the vector log_s instead of its sum per sample",
        cell="02_linear_lu",
        old="log_det = self.log_s.sum().expand(x.shape[0])",
        new="log_det = self.log_s",
        loses={"02_test_linear_lu_log_det": 1, "02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_solves_in_wrong_order",
        description="inverse solves with U first and L second: (LU)⁻¹ is U⁻¹L⁻¹, not L⁻¹U⁻¹",
        cell="02_linear_lu",
        old=(
            "y = torch.linalg.solve_triangular(L, self.P.T @ z.T, upper=False, "
            "unitriangular=True)\n"
            "        x = torch.linalg.solve_triangular(U, y, upper=True).T"
        ),
        new=(
            "y = torch.linalg.solve_triangular(U, self.P.T @ z.T, upper=True)\n"
            "        x = torch.linalg.solve_triangular(L, y, upper=False, unitriangular=True).T"
        ),
        # the log-dets stay right: the wrong matrix L⁻¹U⁻¹Pᵀ has the same |det| as W⁻¹
        loses={"02_test_linear_lu_invertible": 1, "02_test_linear_lu_hidden": 3},
    ),
]
