"""Wrong submissions of assignment 04 (affine coupling), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="scale_on_conditioning_half",
        description="the affine map is applied to every coordinate, the conditioning half too",
        cell="04_coupling_forward",
        old="z = mask * x + (1 - mask) * (x * torch.exp(s) + t)",
        new="z = x * torch.exp(s) + t",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="conditioner_sees_transformed_half",
        description="the conditioner reads the whole x instead of b ⊙ x",
        cell="04_coupling_forward",
        old="s, t = conditioner(mask * x)",
        new="s, t = conditioner(x)",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="forward_log_det_not_summed",
        description="forward returns the log-scales (B, D) instead of their sum (B,)",
        cell="04_coupling_forward",
        old="log_det = ((1 - mask) * s).sum(dim=1)",
        new="log_det = (1 - mask) * s",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="inverse_uses_forward_formula",
        description="inverse applies x ⊙ exp(s) + t again instead of undoing it",
        cell="04_coupling_inverse",
        old="(z - t) * torch.exp(-s)",
        new="(z * torch.exp(s) + t)",
        loses={"04_test_inverse": 1, "04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="inverse_log_det_sign",
        description="inverse returns +Σ s, the log-det of the forward direction",
        cell="04_coupling_inverse",
        old="log_det = -((1 - mask) * s).sum(dim=1)",
        new="log_det = ((1 - mask) * s).sum(dim=1)",
        loses={"04_test_inverse": 1, "04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="same_parity_everywhere",
        description="every coupling has parity 0: the first coordinate is never transformed",
        cell="04_fit_moons",
        old="parity=k % 2",
        new="parity=0",
        loses={"04_test_fit_moons": 2},
    ),
]
