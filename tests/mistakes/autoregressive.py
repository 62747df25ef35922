"""Wrong submissions of assignment 05 (MADE and MAF), each with the points it loses."""

from mistakes import Mistake

MISTAKES = [
    Mistake(
        name="degrees_from_order_values",
        description="degree of coordinate j taken as order[j] + 1, not as its position + 1",
        cell="05_input_degrees",
        old="return torch.argsort(order) + 1",
        new="return order + 1",
        loses={"05_test_input_degrees": 1, "05_test_input_degrees_hidden": 1},
    ),
    Mistake(
        name="output_mask_not_strict",
        description="output mask with ≥ instead of >: x_i sees itself",
        cell="05_made_masks",
        old="degrees[0][:, None] > degrees[-1][None, :]",
        new="degrees[0][:, None] >= degrees[-1][None, :]",
        loses={
            "05_test_made_masks": 1,
            "05_test_made_masks_autoregressive": 1,
            "05_test_made_masks_reference": 1,
        },
    ),
    Mistake(
        name="hidden_masks_strict",
        description="hidden masks with > instead of ≥: output i no longer sees x_{i-1}",
        cell="05_made_masks",
        old="degrees[k + 1][:, None] >= degrees[k][None, :]",
        new="degrees[k + 1][:, None] > degrees[k][None, :]",
        loses={
            "05_test_made_masks": 1,
            "05_test_made_masks_connections": 1,
            "05_test_made_masks_reference": 1,
        },
    ),
    Mistake(
        name="forward_log_det_sign",
        description="forward returns +Σ α, the log-det of the sampling direction",
        cell="05_maf_forward",
        old="return z, -alpha.sum(dim=1)",
        new="return z, alpha.sum(dim=1)",
        loses={"05_test_maf_forward": 1, "05_test_maf_forward_hidden": 1},
    ),
    Mistake(
        name="inverse_conditions_on_noise",
        description="the sequential inverse feeds z to the conditioner, not the x built so far",
        cell="05_maf_inverse",
        old="mu, alpha = conditioner(x)",
        new="mu, alpha = conditioner(z)",
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
    Mistake(
        name="inverse_ignores_ordering",
        description="the inverse fills coordinates 0, 1, …, D-1 instead of following the ordering",
        cell="05_maf_inverse",
        old="for i in order:",
        new="for i in range(z.shape[1]):",
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
]
