"""Wrong submissions of assignment 06 (Glow's building blocks), each with the points it loses."""

from mistakes import Mistake

INVCONV_DIRECTIONS = """        z = torch.einsum("ij,bjhw->bihw", self.weight(), x)
        pixels = x.shape[2] * x.shape[3]
        return z, (pixels * self.log_abs_det_weight()).expand(x.shape[0])
        ### END SOLUTION

    def inverse(self, z):
        \"\"\"z (B, C, H, W) -> (x (B, C, H, W), log_det (B,)).\"\"\"
        ### BEGIN SOLUTION
        x = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight()), z)"""

SQUEEZE_METHODS = (
    "        grids = [x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], "
    "x[:, :, 1::2, 1::2]]\n"
    """        return torch.cat(grids, dim=1), x.new_zeros(x.shape[0])
        ### END SOLUTION

    def inverse(self, z):
        \"\"\"z (B, 4C, H/2, W/2) -> (x (B, C, H, W), log_det (B,)).\"\"\"
        ### BEGIN SOLUTION
        batch, channels, height, width = z.shape
        grids = z.reshape(batch, 2, 2, channels // 4, height, width)  # (batch, a, b, c, i, j)
        x = grids.permute(0, 3, 4, 1, 5, 2)  # (batch, c, i, a, j, b): pixel (2i + a, 2j + b)
        return x.reshape(batch, channels // 4, 2 * height, 2 * width), z.new_zeros(batch)"""
)


def _solution_code(source: str) -> str:
    """``source`` without the solution delimiters, as in a student's submission."""
    return "\n".join(line for line in source.splitlines() if "### " not in line)


MISTAKES = [
    Mistake(
        name="actnorm_reinitialized_every_call",
        description="ActNorm initializes from every batch: a hidden BatchNorm, not a bijection",
        cell="06_actnorm",
        old="if not self.initialized:\n            self.initialize(x)",
        new="self.initialize(x)",
        loses={"06_test_actnorm_bijector": 1, "06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_missing_hw",
        description="ActNorm's forward log-det is -Σ log σ, without the factor H·W",
        cell="06_actnorm",
        old="return z, (-pixels * self.log_scale.sum()).expand(x.shape[0])",
        new="return z, (-self.log_scale.sum()).expand(x.shape[0])",
        loses={"06_test_actnorm_bijector": 1, "06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_height_squared",
        description="ActNorm's pixel count written as H·H: right on square images only",
        cell="06_actnorm",
        old="pixels = x.shape[2] * x.shape[3]",
        new="pixels = x.shape[2] * x.shape[2]",
        loses={"06_test_actnorm_bijector": 1, "06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_statistics_mix_channels",
        description="x.reshape(C, -1) without moving the channels first: statistics mix channels",
        cell="06_actnorm",
        old="per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)",
        new="per_channel = x.reshape(x.shape[1], -1)",
        loses={"06_test_actnorm_init": 1, "06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_log_scale_of_variance",
        description="log σ initialized as the log of the variance, not of the standard deviation",
        cell="06_actnorm",
        old="torch.log(per_channel.std(dim=1, correction=0) + 1e-6)",
        new="torch.log(per_channel.var(dim=1, correction=0) + 1e-6)",
        loses={"06_test_actnorm_init": 1, "06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_parameters_replaced",
        description="initialize assigns new nn.Parameters: an optimizer keeps the old ones",
        cell="06_actnorm",
        old="self.loc.copy_(per_channel.mean(dim=1))",
        new="self.loc = nn.Parameter(per_channel.mean(dim=1))",
        loses={"06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_flag_outside_state_dict",
        description="a Python attribute, not the buffer, records the initialization",
        cell="06_actnorm",
        old="""            self.initialized.fill_(True)

    def forward(self, x):
        \"\"\"x (B, C, H, W) -> (z (B, C, H, W), log_det (B,)); initializes on the first call.\"\"\"
        if not self.initialized:""",
        new="""            self.done = True

    def forward(self, x):
        \"\"\"x (B, C, H, W) -> (z (B, C, H, W), log_det (B,)); initializes on the first call.\"\"\"
        if not getattr(self, "done", False):""",
        loses={"06_test_actnorm_init": 1, "06_test_actnorm_hidden": 2},
    ),
    Mistake(
        name="actnorm_initialized_with_gradients",
        description="the statistics copied into the parameters without torch.no_grad()",
        cell="06_actnorm",
        old="with torch.no_grad():  # statistics, outside the graph",
        new="if True:",
        loses={
            "06_test_actnorm_init": 1,
            "06_test_actnorm_bijector": 1,
            "06_test_actnorm_hidden": 2,
        },
    ),
    Mistake(
        name="invconv_log_without_abs",
        description="log|det W| computed as Σ log s: NaN as soon as an entry of s is negative",
        cell="06_invconv",
        old="torch.log(torch.abs(self.s)).sum()",
        new="torch.log(self.s).sum()",
        loses={
            "06_test_invconv_log_det": 1,
            "06_test_invconv_bijector": 1,
            "06_test_invconv_hidden": 1,
        },
    ),
    Mistake(
        name="invconv_missing_hw",
        description="the 1x1 convolution's forward log-det is log|det W|, without the factor H·W",
        cell="06_invconv",
        old="return z, (pixels * self.log_abs_det_weight()).expand(x.shape[0])",
        new="return z, self.log_abs_det_weight().expand(x.shape[0])",
        loses={"06_test_invconv_bijector": 1, "06_test_invconv_hidden": 1},
    ),
    Mistake(
        name="invconv_transpose_as_inverse",
        description="inverse multiplies by Wᵀ, which is W⁻¹ only while W is orthogonal (at init)",
        cell="06_invconv",
        old="torch.linalg.inv(self.weight())",
        new="self.weight().T",
        loses={"06_test_invconv_bijector": 1, "06_test_invconv_hidden": 1},
    ),
    Mistake(
        name="invconv_multiplies_by_transpose",
        description="channels as a row vector times W in both directions: the map is Wᵀ, not W",
        cell="06_invconv",
        old=_solution_code(INVCONV_DIRECTIONS),
        new=_solution_code(INVCONV_DIRECTIONS.replace('"ij,bjhw->bihw"', '"ji,bjhw->bihw"')),
        loses={"06_test_invconv_bijector": 1, "06_test_invconv_hidden": 1},
    ),
    Mistake(
        name="invconv_weight_without_permutation",
        description="W = L U: the permutation P of the decomposition left out",
        cell="06_invconv",
        old="return self.P @ L @ U",
        new="return L @ U",
        loses={
            "06_test_invconv_weight": 1,
            "06_test_invconv_bijector": 1,
            "06_test_invconv_hidden": 1,
        },
    ),
    Mistake(
        name="invconv_permutation_transposed",
        description="W = Pᵀ L U: the permutation applied the wrong way round",
        cell="06_invconv",
        old="return self.P @ L @ U",
        new="return self.P.T @ L @ U",
        loses={
            "06_test_invconv_weight": 1,
            "06_test_invconv_bijector": 1,
            "06_test_invconv_hidden": 1,
        },
    ),
    Mistake(
        name="invconv_lower_keeps_diagonal",
        description="L = tril(lower) + I: the diagonal of the parameter lower is added to the ones",
        cell="06_invconv",
        old="L = torch.tril(self.lower, diagonal=-1) + eye",
        new="L = torch.tril(self.lower) + eye",
        loses={
            "06_test_invconv_weight": 1,
            "06_test_invconv_bijector": 1,
            "06_test_invconv_hidden": 1,
        },
    ),
    Mistake(
        name="invconv_cached_weight",
        description="W assembled on the first call and cached: stale once the parameters change",
        cell="06_invconv",
        old="""        eye = torch.eye(len(self.s), dtype=self.s.dtype)
        L = torch.tril(self.lower, diagonal=-1) + eye
        U = torch.triu(self.upper, diagonal=1) + torch.diag(self.s)
        return self.P @ L @ U""",
        new="""        if getattr(self, "cached", None) is None:
            eye = torch.eye(len(self.s), dtype=self.s.dtype)
            L = torch.tril(self.lower, diagonal=-1) + eye
            U = torch.triu(self.upper, diagonal=1) + torch.diag(self.s)
            self.cached = (self.P @ L @ U).detach()
        return self.cached""",
        loses={"06_test_invconv_bijector": 1, "06_test_invconv_hidden": 1},
    ),
    Mistake(
        name="invconv_cached_inverse",
        description="W⁻¹ computed on the first inverse call and kept: stale after an update",
        cell="06_invconv",
        old='x = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight()), z)',
        new='if not hasattr(self, "weight_inverse"):\n'
        "            self.weight_inverse = torch.linalg.inv(self.weight())\n"
        '        x = torch.einsum("ij,bjhw->bihw", self.weight_inverse, z)',
        loses={"06_test_invconv_bijector": 1, "06_test_invconv_hidden": 1},
    ),
    Mistake(
        name="squeeze_not_a_permutation",
        description="one 2x2 position taken twice and another never: squeeze is not a permutation",
        cell="06_squeeze",
        old="x[:, :, 0::2, 1::2]",
        new="x[:, :, 1::2, 0::2]",
        loses={"06_test_squeeze": 1, "06_test_squeeze_hidden": 1},
    ),
    Mistake(
        name="squeeze_plain_reshape",
        description="reshape to (B, 4C, H/2, W/2) without a permute: a permutation, but not local",
        cell="06_squeeze",
        old=_solution_code(SQUEEZE_METHODS),
        new="""        b, c, h, w = x.shape
        return x.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z):
        \"\"\"z (B, 4C, H/2, W/2) -> (x (B, C, H, W), log_det (B,)).\"\"\"
        b, c, h, w = z.shape
        return z.reshape(b, c // 4, 2 * h, 2 * w), z.new_zeros(b)""",
        loses={"06_test_squeeze_hidden": 1},
    ),
    Mistake(
        name="squeeze_blocks_split_by_halves",
        description="reshape to (B, C, 2, H/2, 2, W/2): groups pixels H/2 apart, not 2x2 blocks",
        cell="06_squeeze",
        old=_solution_code(SQUEEZE_METHODS),
        new="""        b, c, h, w = x.shape
        blocks = x.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 1, 2, 4, 3, 5)
        return blocks.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z):
        \"\"\"z (B, 4C, H/2, W/2) -> (x (B, C, H, W), log_det (B,)).\"\"\"
        b, c, h, w = z.shape
        blocks = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 2, 4, 3, 5)
        return blocks.reshape(b, c // 4, 2 * h, 2 * w), z.new_zeros(b)""",
        loses={"06_test_squeeze_hidden": 1},
    ),
    Mistake(
        name="squeeze_log_det_scalar",
        description="the log-det returned as the number 0, a scalar tensor, not one per sample",
        cell="06_squeeze",
        old="return torch.cat(grids, dim=1), x.new_zeros(x.shape[0])",
        new="return torch.cat(grids, dim=1), torch.tensor(0.0)",
        loses={"06_test_squeeze": 1, "06_test_squeeze_hidden": 1},
    ),
    Mistake(
        name="squeeze_inverse_swaps_rows_and_columns",
        description="the inverse puts the block's (row, column) back as (column, row)",
        cell="06_squeeze",
        old="x = grids.permute(0, 3, 4, 1, 5, 2)",
        new="x = grids.permute(0, 3, 4, 2, 5, 1)",
        loses={"06_test_squeeze": 1, "06_test_squeeze_hidden": 1},
    ),
]
