"""Wrong submissions of assignment 02 (linear flows), each with the points it loses."""

from mistakes import Mistake

# The reference's test of perm in Permutation.__init__, which several mistakes replace.
PERMUTATION_TEST = (
    "if perm.dim() != 1 or not torch.equal(torch.sort(perm).values, torch.arange(len(perm))):"
)

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
    # Below: mistakes that only the broader hidden inputs of issue 11 catch (most of them
    # scored 10/10 before), or that lose points in more than one task.
    Mistake(
        name="permutation_inverse_reversed",
        description="inverse reverses perm instead of inverting it (equal for the visible perm)",
        cell="02_permutation",
        old="z[:, torch.argsort(self.perm)]",
        new="z[:, self.perm.flip(0)]",
        loses={"02_test_permutation_hidden": 1},
    ),
    Mistake(
        name="permutation_directions_swapped",
        description="forward gathers with the inverse permutation and inverse with perm",
        cell="02_permutation",
        old="return x[:, self.perm], x.new_zeros(x.shape[0])",
        new="return x[:, torch.argsort(self.perm)], x.new_zeros(x.shape[0])",
        # the inverse still applies argsort(perm): the round trip fails too
        loses={"02_test_permutation": 1, "02_test_permutation_hidden": 1},
    ),
    Mistake(
        name="permutation_no_grad",
        description="forward under torch.no_grad (no parameters, so no gradients needed?)",
        cell="02_permutation",
        old="        return x[:, self.perm], x.new_zeros(x.shape[0])\n",
        new=(
            "        with torch.no_grad():\n"
            "            return x[:, self.perm], x.new_zeros(x.shape[0])\n"
        ),
        loses={"02_test_permutation": 1, "02_test_permutation_hidden": 1},
    ),
    Mistake(
        name="permutation_checked_by_sum",
        description="perm validated by its sum 0 + 1 + … + (D-1) only: [1, 1, 1] passes",
        cell="02_permutation",
        old=PERMUTATION_TEST,
        new="if perm.sum() != len(perm) * (len(perm) - 1) // 2:",
        loses={"02_test_permutation_errors_hidden": 1},
    ),
    Mistake(
        name="permutation_checked_for_repeats_only",
        description="perm validated by distinct entries only: [1, 2, 3] passes",
        cell="02_permutation",
        old=PERMUTATION_TEST,
        new="if len(set(perm.tolist())) != len(perm):",
        loses={"02_test_permutation_errors_hidden": 1},
    ),
    Mistake(
        name="permutation_negatives_accepted",
        description="distinct entries below D accepted: [-1, 0, 1] passes (negative indices)",
        cell="02_permutation",
        old=PERMUTATION_TEST,
        new="if len(perm.unique()) != len(perm) or perm.max() >= len(perm):",
        loses={"02_test_permutation_errors_hidden": 1},
    ),
    Mistake(
        name="permutation_assert",
        description="an assert instead of a ValueError: AssertionError is the wrong exception",
        cell="02_permutation",
        old=(
            "        if perm.dim() != 1 or not torch.equal(torch.sort(perm).values, "
            "torch.arange(len(perm))):\n"
            "            raise ValueError(\n"
            '                f"perm must be a permutation of 0, ..., {len(perm) - 1}, '
            'got {perm.tolist()}"\n'
            "            )\n"
        ),
        new=(
            '        assert sorted(perm.tolist()) == list(range(len(perm))), "not a permutation"\n'
        ),
        loses={"02_test_permutation_errors": 1, "02_test_permutation_errors_hidden": 1},
    ),
    Mistake(
        name="lu_cached_weight",
        description="weight() computed on the first call and cached: stale once trained",
        cell="02_linear_lu",
        old="        L, U = self.factors()\n        return self.P @ L @ U\n",
        new=(
            '        if not hasattr(self, "cached_weight"):\n'
            "            L, U = self.factors()\n"
            "            self.cached_weight = self.P @ L @ U\n"
            "        return self.cached_weight\n"
        ),
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_u_keeps_diagonal",
        description="triu(U) without diagonal=1: U's stored diagonal is added to s once trained",
        cell="02_linear_lu",
        old="U = torch.triu(self.U, diagonal=1)",
        new="U = torch.triu(self.U)",
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_l_keeps_diagonal",
        description="tril(L) without diagonal=-1: L's diagonal is 1 + L_ii once trained",
        cell="02_linear_lu",
        old="L = torch.tril(self.L, diagonal=-1) + eye",
        new="L = torch.tril(self.L) + eye",
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_p_transposed",
        description="W = Pᵀ L U (the convention P A = L U): equal when P is symmetric",
        cell="02_linear_lu",
        old="return self.P @ L @ U",
        new="return self.P.T @ L @ U",
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_p_forgotten",
        description="W = L U: the permutation left out of weight() (the inverse still uses P)",
        cell="02_linear_lu",
        old="return self.P @ L @ U",
        new="return L @ U",
        # L U is orthogonal too, so the visible test of W Wᵀ = I passes
        loses={"02_test_linear_lu_invertible": 1, "02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_log_det_no_grad",
        description="the log-det computed under torch.no_grad (it is a constant of x, after all)",
        cell="02_linear_lu",
        old="        log_det = self.log_s.sum().expand(x.shape[0])\n",
        new=(
            "        with torch.no_grad():\n"
            "            log_det = self.log_s.sum().expand(x.shape[0])\n"
        ),
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_inverse_no_grad",
        description="the inverse (sampling) run under torch.no_grad",
        cell="02_linear_lu",
        old=(
            "        L, U = self.factors()\n"
            "        y = torch.linalg.solve_triangular(L, self.P.T @ z.T, upper=False, "
            "unitriangular=True)\n"
            "        x = torch.linalg.solve_triangular(U, y, upper=True).T\n"
        ),
        new=(
            "        with torch.no_grad():\n"
            "            L, U = self.factors()\n"
            "            y = torch.linalg.solve_triangular(L, self.P.T @ z.T, upper=False, "
            "unitriangular=True)\n"
            "            x = torch.linalg.solve_triangular(U, y, upper=True).T\n"
        ),
        loses={"02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_forward_not_transposed",
        description="z = x @ W instead of x @ W.T: the rows multiplied by Wᵀ",
        cell="02_linear_lu",
        old="return x @ self.weight().T, log_det",
        new="return x @ self.weight(), log_det",
        loses={"02_test_linear_lu_invertible": 1, "02_test_linear_lu_hidden": 3},
    ),
    Mistake(
        name="lu_u_unitriangular",
        description="unitriangular=True for U too: its diagonal s is read as ones",
        cell="02_linear_lu",
        old="x = torch.linalg.solve_triangular(U, y, upper=True).T",
        new="x = torch.linalg.solve_triangular(U, y, upper=True, unitriangular=True).T",
        # the visible log-det test passes: for the fresh, orthogonal W both log-dets are 0
        loses={"02_test_linear_lu_invertible": 1, "02_test_linear_lu_hidden": 3},
    ),
]
