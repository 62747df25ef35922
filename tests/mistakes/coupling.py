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
    Mistake(
        name="forward_log_det_under_no_grad",
        description="the log-det summed under torch.no_grad(): right values, no gradient",
        cell="04_coupling_forward",
        old="    log_det = ((1 - mask) * s).sum(dim=1)\n",
        new="    with torch.no_grad():\n        log_det = ((1 - mask) * s).sum(dim=1)\n",
        loses={"04_test_forward_hidden": 3},
    ),
    Mistake(
        name="forward_shift_unmasked",
        description="the shift t added outside the factor 1 - b: it moves the conditioning half",
        cell="04_coupling_forward",
        old="z = mask * x + (1 - mask) * (x * torch.exp(s) + t)",
        new="z = mask * x + (1 - mask) * x * torch.exp(s) + t",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="forward_shift_before_scale",
        description="(x + t) ⊙ exp(s) instead of x ⊙ exp(s) + t: the shift is scaled too",
        cell="04_coupling_forward",
        old="(x * torch.exp(s) + t)",
        new="(x + t) * torch.exp(s)",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="forward_log_det_over_conditioning_half",
        description="the log-det sums s over the conditioning coordinates (b) instead of 1 - b",
        cell="04_coupling_forward",
        old="log_det = ((1 - mask) * s).sum(dim=1)",
        new="log_det = (mask * s).sum(dim=1)",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="forward_every_other_coordinate",
        description="the transformed coordinates taken as every other one from the mask's first "
        "entry: right for alternating masks only",
        cell="04_coupling_forward",
        old="""    z = mask * x + (1 - mask) * (x * torch.exp(s) + t)
    log_det = ((1 - mask) * s).sum(dim=1)
""",
        new="""    start = 1 if mask[0] == 1 else 0
    moved = slice(start, None, 2)
    z = x.clone()
    z[:, moved] = x[:, moved] * torch.exp(s[:, moved]) + t[:, moved]
    log_det = s[:, moved].sum(dim=1)
""",
        loses={"04_test_forward_hidden": 3},
    ),
    Mistake(
        name="forward_writes_into_x",
        description="z written into x in place (z = x is no copy): the caller's batch changes",
        cell="04_coupling_forward",
        old="""    z = mask * x + (1 - mask) * (x * torch.exp(s) + t)
""",
        new="""    moved = mask == 0
    z = x
    z[:, moved] = x[:, moved] * torch.exp(s[:, moved]) + t[:, moved]
""",
        loses={"04_test_forward": 1, "04_test_forward_hidden": 3},
    ),
    Mistake(
        name="inverse_under_no_grad",
        description="the whole inverse under torch.no_grad() ('it is only used for sampling')",
        cell="04_coupling_inverse",
        old="""    s, t = conditioner(mask * z)
    x = mask * z + (1 - mask) * (z - t) * torch.exp(-s)
    log_det = -((1 - mask) * s).sum(dim=1)
""",
        new="""    with torch.no_grad():
        s, t = conditioner(mask * z)
        x = mask * z + (1 - mask) * (z - t) * torch.exp(-s)
        log_det = -((1 - mask) * s).sum(dim=1)
""",
        loses={"04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="inverse_conditioner_sees_all_of_z",
        description="the inverse calls the conditioner on z instead of b ⊙ z",
        cell="04_coupling_inverse",
        old="s, t = conditioner(mask * z)",
        new="s, t = conditioner(z)",
        loses={"04_test_inverse": 1, "04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="inverse_scales_before_shifting",
        description="z ⊙ exp(-s) - t instead of (z - t) ⊙ exp(-s)",
        cell="04_coupling_inverse",
        old="(z - t) * torch.exp(-s)",
        new="(z * torch.exp(-s) - t)",
        loses={"04_test_inverse": 1, "04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="inverse_scale_sign",
        description="the inverse multiplies by exp(s) again instead of exp(-s)",
        cell="04_coupling_inverse",
        old="(z - t) * torch.exp(-s)",
        new="(z - t) * torch.exp(s)",
        loses={"04_test_inverse": 1, "04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="inverse_every_other_coordinate",
        description="the inverse moves every other coordinate from the mask's first entry: right "
        "for alternating masks only",
        cell="04_coupling_inverse",
        old="""    x = mask * z + (1 - mask) * (z - t) * torch.exp(-s)
    log_det = -((1 - mask) * s).sum(dim=1)
""",
        new="""    moved = slice(1 if mask[0] == 1 else 0, None, 2)
    x = z.clone()
    x[:, moved] = (z[:, moved] - t[:, moved]) * torch.exp(-s[:, moved])
    log_det = -s[:, moved].sum(dim=1)
""",
        loses={"04_test_inverse_hidden": 3},
    ),
    Mistake(
        name="fit_ten_steps",
        description="steps=10 left from a quick try instead of STEPS",
        cell="04_fit_moons",
        old="steps=STEPS",
        new="steps=10",
        loses={"04_test_fit_moons": 2},
    ),
    Mistake(
        name="fit_one_layer",
        description="a single coupling layer: one coordinate is never transformed",
        cell="04_fit_moons",
        old="for k in range(4)",
        new="for k in range(1)",
        loses={"04_test_fit_moons": 2},
    ),
]
