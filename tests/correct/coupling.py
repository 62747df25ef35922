"""Correct submissions of assignment 04 (affine coupling) in other styles (see
tests/correct/__init__.py)."""

from correct import Rewrite

CORRECT: list[Rewrite] = [
    Rewrite(
        name="boolean_index_into_a_clone",
        description="boolean indexing of the moved coordinates, written into a clone",
        cells={
            "04_coupling_forward": '''def coupling_forward(x, mask, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)): the normalizing direction of the coupling."""
    moved = mask == 0
    s, t = conditioner(x * mask)
    z = x.clone()
    z[:, moved] = x[:, moved] * torch.exp(s[:, moved]) + t[:, moved]
    return z, s[:, moved].sum(dim=1)
''',
            "04_coupling_inverse": '''def coupling_inverse(z, mask, conditioner):
    """z (B, D) -> (x (B, D), log_det (B,)): the generative direction of the coupling."""
    moved = mask == 0
    s, t = conditioner(z * mask)
    x = z.clone()
    x[:, moved] = (z[:, moved] - t[:, moved]) / torch.exp(s[:, moved])
    return x, -s[:, moved].sum(dim=1)
''',
        },
    ),
    Rewrite(
        name="where_and_own_training_loop",
        description="torch.where on a boolean mask, and a hand-written Adam loop with "
        "forward_kl, seeded with torch.manual_seed",
        cells={
            "04_coupling_forward": '''def coupling_forward(x, mask, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)): the normalizing direction of the coupling."""
    keep = mask.bool()
    s, t = conditioner(torch.where(keep, x, torch.zeros_like(x)))
    z = torch.where(keep, x, x * s.exp() + t)
    log_det = torch.where(keep, torch.zeros_like(s), s).sum(-1)
    return z, log_det
''',
            "04_coupling_inverse": '''def coupling_inverse(z, mask, conditioner):
    """z (B, D) -> (x (B, D), log_det (B,)): the generative direction of the coupling."""
    keep = mask.bool()
    s, t = conditioner(torch.where(keep, z, torch.zeros_like(z)))
    x = torch.where(keep, z, (z - t) * (-s).exp())
    return x, -torch.where(keep, torch.zeros_like(s), s).sum(-1)
''',
            "04_fit_moons": """from nf_course import Compose, Flow, StandardNormal

torch.manual_seed(7)
flow = Flow(
    Compose(*[AffineCoupling(2, hidden=32, parity=parity) for parity in (0, 1, 0, 1)]),
    StandardNormal(2),
)
optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
generator = torch.Generator().manual_seed(8)
for step in range(STEPS):
    loss = flow.forward_kl(moons.sample(128, generator=generator))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 50 == 0:
        print(step, loss.item())
""",
        },
    ),
    Rewrite(
        name="loop_over_coordinates",
        description="a Python loop over the coordinates with an if on the mask, columns stacked, "
        "the log-det accumulated in a float64 zeros tensor, debug prints",
        cells={
            "04_coupling_forward": '''def coupling_forward(x, mask, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)): the normalizing direction of the coupling."""
    s, t = conditioner(mask * x)
    print("s in", s.min().item(), s.max().item())
    columns = []
    log_det = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        if mask[i] == 1:
            columns.append(x[:, i])
        else:
            columns.append(x[:, i] * torch.exp(s[:, i]) + t[:, i])
            log_det = log_det + s[:, i]
    return torch.stack(columns, dim=1), log_det
''',
            "04_coupling_inverse": '''def coupling_inverse(z, mask, conditioner):
    """z (B, D) -> (x (B, D), log_det (B,)): the generative direction of the coupling."""
    s, t = conditioner(mask * z)
    columns = []
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    for i, conditioning in enumerate(mask.tolist()):
        if conditioning:
            columns.append(z[:, i])
        else:
            columns.append((z[:, i] - t[:, i]) * torch.exp(-s[:, i]))
            log_det = log_det - s[:, i]
    print("inverse of a batch of", z.shape[0])
    return torch.stack(columns, dim=1), log_det
''',
        },
    ),
    Rewrite(
        name="distributions_affine_transform",
        description="torch.distributions.AffineTransform with the masked shift and scale, its "
        "inv and log_abs_det_jacobian",
        cells={
            "04_coupling_forward": '''from torch.distributions.transforms import AffineTransform


def coupling_forward(x, mask, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)): the normalizing direction of the coupling."""
    s, t = conditioner(mask * x)
    affine = AffineTransform(loc=(1 - mask) * t, scale=torch.exp((1 - mask) * s))
    z = affine(x)
    return z, affine.log_abs_det_jacobian(x, z).sum(dim=1)
''',
            "04_coupling_inverse": '''from torch.distributions.transforms import AffineTransform


def coupling_inverse(z, mask, conditioner):
    """z (B, D) -> (x (B, D), log_det (B,)): the generative direction of the coupling."""
    s, t = conditioner(mask * z)
    affine = AffineTransform(loc=(1 - mask) * t, scale=torch.exp((1 - mask) * s))
    x = affine.inv(z)
    return x, affine.inv.log_abs_det_jacobian(z, x).sum(dim=1)
''',
        },
    ),
    Rewrite(
        name="float32_minded_casts",
        description="the mask cast to the batch's dtype, 1 - b computed once, einsum for the "
        "log-det, and fit with another seed and batch size",
        cells={
            "04_coupling_forward": '''def coupling_forward(x, mask, conditioner):
    """x (B, D) -> (z (B, D), log_det (B,)): the normalizing direction of the coupling."""
    keep = mask.to(dtype=x.dtype, device=x.device)
    move = torch.ones_like(keep) - keep
    s, t = conditioner(x * keep)
    s, t = s.to(x.dtype), t.to(x.dtype)
    z = keep * x + move * (x * torch.exp(s) + t)
    return z, torch.einsum("bd,d->b", s, move)
''',
            "04_coupling_inverse": '''def coupling_inverse(z, mask, conditioner):
    """z (B, D) -> (x (B, D), log_det (B,)): the generative direction of the coupling."""
    keep = mask.to(dtype=z.dtype, device=z.device)
    move = torch.ones_like(keep) - keep
    s, t = conditioner(z * keep)
    s, t = s.to(z.dtype), t.to(z.dtype)
    x = keep * z + move * (z - t) * torch.exp(-s)
    return x, -torch.einsum("bd,d->b", s, move)
''',
            "04_fit_moons": """from nf_course import Compose, Flow, StandardNormal
from nf_course.training import fit

torch.manual_seed(3)
layers = [AffineCoupling(2, hidden=32, parity=k % 2) for k in range(4)]
flow = Flow(Compose(*layers), StandardNormal(2))
history = fit(flow, data=moons.sample, steps=STEPS, batch_size=256, lr=1e-2, seed=5)
""",
        },
    ),
]
