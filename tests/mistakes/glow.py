"""Wrong submissions of assignment 06 (Glow's building blocks), each with the points it loses."""

from mistakes import Mistake

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
        name="squeeze_not_a_permutation",
        description="one 2x2 position taken twice and another never: squeeze is not a permutation",
        cell="06_squeeze",
        old="x[:, :, 0::2, 1::2]",
        new="x[:, :, 1::2, 0::2]",
        loses={"06_test_squeeze": 1, "06_test_squeeze_hidden": 1},
    ),
]
