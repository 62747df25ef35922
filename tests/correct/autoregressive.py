"""Correct submissions of assignment 05 (MADE and MAF) in other styles (see
tests/correct/__init__.py)."""

from correct import Rewrite

CORRECT: list[Rewrite] = [
    Rewrite(
        name="python_loops",
        description="loops over coordinates and units, a stack of columns in the inverse",
        cells={
            "05_input_degrees": '''def input_degrees(order):
    """order (D,) long, coordinates from first to last -> degrees m (D,) long, 1..D."""
    degrees = torch.zeros(len(order), dtype=torch.long)
    for position, coordinate in enumerate(order.tolist()):
        degrees[coordinate] = position + 1
    return degrees
''',
            "05_made_masks": '''def made_masks(degrees):
    """[m_0 (D,), m_1, ..., m_L] -> [M_1, ..., M_L, M_out], boolean (out_features, in_features)."""
    masks = []
    for layer in range(1, len(degrees)):
        below, here = degrees[layer - 1].tolist(), degrees[layer].tolist()
        mask = torch.zeros(len(here), len(below), dtype=torch.bool)
        for k, m_k in enumerate(here):
            for j, m_j in enumerate(below):
                mask[k, j] = m_k >= m_j
        masks.append(mask)
    last, outputs = degrees[-1].tolist(), degrees[0].tolist()
    output_mask = torch.zeros(len(outputs), len(last), dtype=torch.bool)
    for i, m_i in enumerate(outputs):
        for k, m_k in enumerate(last):
            output_mask[i, k] = m_i > m_k
    masks.append(output_mask)
    return masks
''',
            "05_maf_forward": '''def maf_forward(x, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)) in one pass of the conditioner."""
    mu, alpha = conditioner(x)
    columns = [(x[:, i] - mu[:, i]) * torch.exp(-alpha[:, i]) for i in range(x.shape[1])]
    log_det = torch.zeros(x.shape[0])
    for i in range(x.shape[1]):
        log_det = log_det - alpha[:, i]
    return torch.stack(columns, dim=1), log_det
''',
            "05_maf_inverse": '''def maf_inverse(z, conditioner, order):
    """z (B, D) -> (x (B, D), log_det (B,)) in D passes, one coordinate per pass."""
    columns = [torch.zeros(z.shape[0]) for _ in range(z.shape[1])]
    log_det = torch.zeros(z.shape[0])
    for i in order:
        mu, alpha = conditioner(torch.stack(columns, dim=1))
        columns[i] = mu[:, i] + torch.exp(alpha[:, i]) * z[:, i]
        log_det = log_det + alpha[:, i]
    return torch.stack(columns, dim=1), log_det
''',
        },
    ),
    Rewrite(
        name="scatter_where_pairwise",
        description="scatter for the degrees, pairwise and torch.ge for the masks, torch.where",
        cells={
            "05_input_degrees": '''def input_degrees(order):
    """order (D,) long, coordinates from first to last -> degrees m (D,) long, 1..D."""
    positions = torch.arange(1, len(order) + 1)
    return torch.zeros_like(order).scatter(0, order, positions)
''',
            "05_made_masks": '''from itertools import pairwise


def made_masks(degrees):
    """[m_0 (D,), m_1, ..., m_L] -> [M_1, ..., M_L, M_out], boolean (out_features, in_features)."""
    hidden = [torch.ge(out.unsqueeze(1), inp.unsqueeze(0)) for inp, out in pairwise(degrees)]
    return [*hidden, torch.gt(degrees[0].unsqueeze(1), degrees[-1].unsqueeze(0))]
''',
            "05_maf_forward": '''def maf_forward(x, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)) in one pass of the conditioner."""
    mu, alpha = conditioner(x)
    return (x - mu) / alpha.exp(), -torch.einsum("bd->b", alpha)
''',
            "05_maf_inverse": '''def maf_inverse(z, conditioner, order):
    """z (B, D) -> (x (B, D), log_det (B,)) in D passes, one coordinate per pass."""
    x = torch.zeros_like(z)
    columns = torch.arange(z.shape[1])
    for i in order:
        mu, alpha = conditioner(x)
        x = torch.where(columns == i, mu + alpha.exp() * z, x)
    return x, alpha.sum(-1)
''',
        },
    ),
    Rewrite(
        name="distributions_affine",
        description="torch.distributions.AffineTransform for both directions, int masks",
        cells={
            "05_input_degrees": '''def input_degrees(order):
    """order (D,) long, coordinates from first to last -> degrees m (D,) long, 1..D."""
    listed = order.tolist()
    return torch.tensor([listed.index(j) + 1 for j in range(len(listed))])
''',
            "05_made_masks": '''def made_masks(degrees):
    """[m_0 (D,), m_1, ..., m_L] -> [M_1, ..., M_L, M_out], boolean (out_features, in_features)."""
    masks = []
    for below, here in zip(degrees[:-1], degrees[1:]):
        masks.append((below[None, :] <= here[:, None]).int())
    masks.append((degrees[-1][None, :] < degrees[0][:, None]).int())
    return masks
''',
            "05_maf_forward": '''from torch.distributions.transforms import AffineTransform


def maf_forward(x, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)) in one pass of the conditioner."""
    mu, alpha = conditioner(x)
    scale = torch.exp(-alpha)
    transform = AffineTransform(loc=-mu * scale, scale=scale)
    z = transform(x)
    return z, transform.log_abs_det_jacobian(x, z).sum(dim=1)
''',
            "05_maf_inverse": '''from torch.distributions.transforms import AffineTransform


def maf_inverse(z, conditioner, order):
    """z (B, D) -> (x (B, D), log_det (B,)) in D passes, one coordinate per pass."""
    x = torch.zeros_like(z)
    for i in order:
        mu, alpha = conditioner(x)
        step = AffineTransform(loc=mu[:, i], scale=alpha[:, i].exp())
        x = torch.cat([x[:, :i], step(z[:, i]).unsqueeze(1), x[:, i + 1 :]], dim=1)
    return x, AffineTransform(loc=mu, scale=alpha.exp()).log_abs_det_jacobian(z, x).sum(1)
''',
        },
    ),
    Rewrite(
        name="index_copy_extra_pass",
        description=(
            "index_copy from a copy of z, a final extra pass for the log-det, a debug print of "
            "float() of tensors that require grad (torch warns on stderr)"
        ),
        cells={
            "05_maf_forward": '''def maf_forward(x, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)) in one pass of the conditioner."""
    mu, alpha = conditioner(x)
    print("alpha ranges over", float(alpha.min()), "to", float(alpha.max()))  # warns
    z = (x - mu) * torch.exp(-alpha)
    log_det = -alpha.sum(dim=1)
    return z, log_det
''',
            "05_maf_inverse": '''def maf_inverse(z, conditioner, order):
    """z (B, D) -> (x (B, D), log_det (B,)) in D passes, one coordinate per pass."""
    x = z.clone()  # the values of coordinates not yet filled are never read
    for i in order:
        mu, alpha = conditioner(x)
        index = torch.tensor([i])
        x = x.index_copy(1, index, mu[:, index] + torch.exp(alpha[:, index]) * z[:, index])
    _, alpha = conditioner(x)  # once more, at the final x
    return x, alpha.sum(dim=1)
''',
        },
    ),
    Rewrite(
        name="clone_then_assign",
        description="a fresh clone before each in-place write, dtype-explicit float32-minded code",
        cells={
            "05_input_degrees": '''def input_degrees(order):
    """order (D,) long, coordinates from first to last -> degrees m (D,) long, 1..D."""
    degrees = torch.empty(order.numel(), dtype=torch.long)
    degrees[order] = torch.arange(1, order.numel() + 1, dtype=torch.long)
    return degrees
''',
            "05_made_masks": '''def made_masks(degrees):
    """[m_0 (D,), m_1, ..., m_L] -> [M_1, ..., M_L, M_out], boolean (out_features, in_features)."""
    def allowed(out_degrees, in_degrees, strict):
        difference = out_degrees.view(-1, 1) - in_degrees.view(1, -1)
        return (difference > 0) if strict else (difference >= 0)

    masks = [allowed(degrees[k], degrees[k - 1], strict=False) for k in range(1, len(degrees))]
    masks.append(allowed(degrees[0], degrees[-1], strict=True))
    return [mask.to(torch.bool) for mask in masks]
''',
            "05_maf_inverse": '''def maf_inverse(z, conditioner, order):
    """z (B, D) -> (x (B, D), log_det (B,)) in D passes, one coordinate per pass."""
    x = torch.zeros(z.shape, dtype=z.dtype)
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    for i in order:
        mu, alpha = conditioner(x)
        x = x.clone()  # the conditioner keeps the old x for the backward pass
        x[:, i] = mu[:, i] + torch.exp(alpha[:, i]) * z[:, i]
        log_det = log_det + alpha[:, i]
    return x, log_det
''',
        },
    ),
    Rewrite(
        name="one_hot_matrices",
        description="degrees from a one-hot matrix, masks from a helper, log-det as a matmul",
        cells={
            "05_input_degrees": '''def input_degrees(order):
    """order (D,) long, coordinates from first to last -> degrees m (D,) long, 1..D."""
    dim = len(order)
    one_hot = order[:, None] == torch.arange(dim)[None, :]  # [position, coordinate]
    return (one_hot.long() * torch.arange(1, dim + 1)[:, None]).sum(dim=0)
''',
            "05_made_masks": '''def connect(out_degrees, in_degrees, *, strict):
    """Boolean (len(out_degrees), len(in_degrees)) connectivity."""
    grid_out, grid_in = torch.meshgrid(out_degrees, in_degrees, indexing="ij")
    return grid_out > grid_in if strict else grid_out >= grid_in


def made_masks(degrees):
    """[m_0 (D,), m_1, ..., m_L] -> [M_1, ..., M_L, M_out], boolean (out_features, in_features)."""
    layers = list(degrees) + [degrees[0]]
    return [
        connect(layers[k + 1], layers[k], strict=k == len(layers) - 2)
        for k in range(len(layers) - 1)
    ]
''',
            "05_maf_forward": '''def maf_forward(x, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)) in one pass of the conditioner."""
    mu, alpha = conditioner(x)
    ones = torch.ones(alpha.shape[1], dtype=alpha.dtype)
    return torch.exp(-alpha) * (x - mu), -(alpha @ ones)
''',
        },
    ),
]
