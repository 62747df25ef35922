"""Wrong submissions of assignment 05 (MADE and MAF), each with the points it loses."""

from mistakes import Mistake

INVERSE_LOOP = """    for i in order:
        mu, alpha = conditioner(x)
        x_i = mu[:, i] + torch.exp(alpha[:, i]) * z[:, i]
        x = torch.cat([x[:, :i], x_i[:, None], x[:, i + 1 :]], dim=1)
"""

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
        name="degrees_zero_based",
        description="degrees counted from 0: the first coordinate of the ordering gets degree 0",
        cell="05_input_degrees",
        old="return torch.argsort(order) + 1",
        new="return torch.argsort(order)",
        loses={"05_test_input_degrees": 1, "05_test_input_degrees_hidden": 1},
    ),
    Mistake(
        name="degrees_by_argsort_twice",
        description="argsort applied twice (once to sort, once more 'to invert'): order + 1 again",
        cell="05_input_degrees",
        old="return torch.argsort(order) + 1",
        new="return torch.argsort(torch.argsort(order)) + 1",
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
        name="output_mask_from_first_hidden_layer",
        description="the output mask compares with the first hidden layer's degrees, not the last",
        cell="05_made_masks",
        old="degrees[0][:, None] > degrees[-1][None, :]",
        new="degrees[0][:, None] > degrees[1][None, :]",
        loses={
            "05_test_made_masks": 1,
            "05_test_made_masks_autoregressive": 1,
            "05_test_made_masks_connections": 1,
            "05_test_made_masks_reference": 1,
        },
    ),
    Mistake(
        name="masks_for_two_hidden_layers_only",
        description="the masks written out for exactly two hidden layers, as in the visible test",
        cell="05_made_masks",
        old="    masks = [degrees[k + 1][:, None] >= degrees[k][None, :] "
        "for k in range(len(degrees) - 1)]\n"
        "    masks.append(degrees[0][:, None] > degrees[-1][None, :])\n"
        "    return masks",
        new="""    m0, m1, m2 = degrees[0], degrees[1], degrees[2]
    return [m1[:, None] >= m0[None, :], m2[:, None] >= m1[None, :], m0[:, None] > m2[None, :]]""",
        loses={
            "05_test_made_masks_autoregressive": 1,
            "05_test_made_masks_connections": 1,
            "05_test_made_masks_reference": 1,
        },
    ),
    Mistake(
        name="hidden_masks_inequality_reversed",
        description="a hidden unit reads the units of larger degree (m(k') ≥ m(k)), not smaller",
        cell="05_made_masks",
        old="degrees[k + 1][:, None] >= degrees[k][None, :]",
        new="degrees[k + 1][:, None] <= degrees[k][None, :]",
        loses={
            "05_test_made_masks": 1,
            "05_test_made_masks_autoregressive": 1,
            "05_test_made_masks_reference": 1,
        },
    ),
    Mistake(
        name="output_degrees_assumed_natural",
        description="the outputs get the degrees 1, …, D of the natural ordering, not m_0",
        cell="05_made_masks",
        old="masks.append(degrees[0][:, None] > degrees[-1][None, :])",
        new="outputs = torch.arange(1, len(degrees[0]) + 1)\n"
        "    masks.append(outputs[:, None] > degrees[-1][None, :])",
        loses={
            "05_test_made_masks_autoregressive": 1,
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
        name="forward_log_det_detached",
        description="the forward log-det computed from alpha.detach(): right values, no gradient",
        cell="05_maf_forward",
        old="return z, -alpha.sum(dim=1)",
        new="return z, -alpha.detach().sum(dim=1)",
        loses={"05_test_maf_forward": 1, "05_test_maf_forward_hidden": 1},
    ),
    Mistake(
        name="forward_scale_sign",
        description="z = (x - μ)·exp(+α): the sampling direction's scale used for the density",
        cell="05_maf_forward",
        old="z = (x - mu) * torch.exp(-alpha)",
        new="z = (x - mu) * torch.exp(alpha)",
        loses={"05_test_maf_forward": 1, "05_test_maf_forward_hidden": 1},
    ),
    Mistake(
        name="forward_one_pass_per_coordinate",
        description="forward loops over the coordinates like the inverse: right values, D passes",
        cell="05_maf_forward",
        old="""    mu, alpha = conditioner(x)
    z = (x - mu) * torch.exp(-alpha)""",
        new="""    columns = []
    for i in range(x.shape[1]):
        mu, alpha = conditioner(x)
        columns.append((x[:, i] - mu[:, i]) * torch.exp(-alpha[:, i]))
    z = torch.stack(columns, dim=1)""",
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
    Mistake(
        name="inverse_follows_inverse_permutation",
        description="the inverse fills the coordinates in the order argsort(order) (the degrees)",
        cell="05_maf_inverse",
        old="for i in order:",
        new="for i in torch.argsort(torch.tensor(order)).tolist():",
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
    Mistake(
        name="inverse_without_gradients",
        description="the sequential loop run under torch.no_grad(): samples carry no gradient",
        cell="05_maf_inverse",
        old=INVERSE_LOOP,
        new="    with torch.no_grad():\n"
        + "".join("    " + line + "\n" for line in INVERSE_LOOP.splitlines()),
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
    Mistake(
        name="inverse_writes_in_place",
        description="x[:, i] = … after the conditioner has read x: the backward pass breaks",
        cell="05_maf_inverse",
        old="x = torch.cat([x[:, :i], x_i[:, None], x[:, i + 1 :]], dim=1)",
        new="x[:, i] = x_i",
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
    Mistake(
        name="inverse_log_det_from_first_pass",
        description="the inverse log-det summed from the α of the first pass (x still all zero)",
        cell="05_maf_inverse",
        old="    x = torch.zeros_like(z)\n" + INVERSE_LOOP,
        new="    x = torch.zeros_like(z)\n    log_det = conditioner(x)[1].sum(dim=1)\n"
        + INVERSE_LOOP
        + "    return x, log_det\n",
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
    Mistake(
        name="inverse_uses_forward_formula",
        description="x_i = (z_i - μ_i)·exp(-α_i): the density direction's formula in the sampler",
        cell="05_maf_inverse",
        old="x_i = mu[:, i] + torch.exp(alpha[:, i]) * z[:, i]",
        new="x_i = (z[:, i] - mu[:, i]) * torch.exp(-alpha[:, i])",
        loses={"05_test_maf_inverse": 1, "05_test_maf_inverse_hidden": 1},
    ),
]
