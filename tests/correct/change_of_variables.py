"""Correct submissions of the assignment in other styles (see tests/correct/__init__.py)."""

from correct import Rewrite

# The given parts of the AffineBijector cell, around the two methods a student writes.
_AFFINE_HEAD = '''class AffineBijector(torch.nn.Module):
    """The bijector of X = A Z + b: forward x -> A^{-1}(x - b), inverse z -> A z + b."""

    def __init__(self, A, b):
        super().__init__()
        self.A = torch.nn.Parameter(A.clone())
        self.b = torch.nn.Parameter(b.clone())
'''


def _affine(forward: str, inverse: str, extra: str = "") -> str:
    """The AffineBijector cell with the given bodies (indented by 8 spaces) and extra methods."""
    return (
        _AFFINE_HEAD
        + extra
        + '\n    def forward(self, x):\n        """x (B, D) -> (z (B, D), log_det (B,)), the '
        'normalizing direction."""\n'
        + forward
        + '\n    def inverse(self, z):\n        """z (B, D) -> (x (B, D), log_det (B,)), the '
        'generative direction."""\n' + inverse
    )


CORRECT = [
    Rewrite(
        name="distributions",
        description="torch.distributions for every Gaussian, the log-scale as a tensor",
        cells={
            "01_affine_1d": '''def affine_log_density(x, scale, shift, base_log_prob):
    """log p_X(x) for X = scale * Z + shift; x of any shape, result of the same shape."""
    log_abs_scale = torch.as_tensor(scale, dtype=x.dtype).abs().log()
    return base_log_prob((x - shift) / scale) - log_abs_scale
''',
            "01_exp_normal": '''def exp_normal_log_density(x):
    """log p_X(x) for X = exp(Z), Z ~ N(0, 1); -inf where x <= 0."""
    inside = x > 0
    safe = torch.where(inside, x, torch.ones_like(x))  # LogNormal refuses x <= 0
    log_p = torch.distributions.LogNormal(0.0, 1.0).log_prob(safe)
    return log_p.masked_fill(~inside, float("-inf"))
''',
            "01_linear_log_density": '''def linear_log_density(x, A, b):
    """log p_X(x) for X = A Z + b, Z ~ N(0, I): x (B, D) -> (B,)."""
    z, log_det = AffineBijector(A, b).forward(x)
    base = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    return base.log_prob(z).sum(dim=-1) + log_det
''',
        },
    ),
    Rewrite(
        name="batched_solve",
        description="a batched solve on column vectors, slogdet unpacked as a tuple, repeat()",
        cells={
            "01_affine_bijector": _affine(
                forward="""        columns = (x - self.b).unsqueeze(-1)  # (B, D, 1)
        z = torch.linalg.solve(self.A, columns).squeeze(-1)
        sign, log_abs_det = torch.linalg.slogdet(self.A)
        return z, (-log_abs_det).repeat(x.shape[0])
""",
                inverse="""        x = (self.A @ z.unsqueeze(-1)).squeeze(-1) + self.b
        sign, log_abs_det = torch.linalg.slogdet(self.A)
        return x, log_abs_det.repeat(z.shape[0])
""",
            ),
            "01_linear_log_density": '''def linear_log_density(x, A, b):
    """log p_X(x) for X = A Z + b, Z ~ N(0, I): x (B, D) -> (B,)."""
    z, log_det = AffineBijector(A, b).forward(x)
    D = x.shape[-1]
    standard = torch.distributions.MultivariateNormal(torch.zeros(D), torch.eye(D))
    return standard.log_prob(z) + log_det
''',
        },
    ),
    Rewrite(
        name="lu_factorization",
        description="A factored by lu_factor once per call: lu_solve, log|det A| from the pivots",
        cells={
            "01_affine_bijector": _affine(
                extra='''
    def log_abs_det(self):
        """log|det A| from the diagonal of its LU factorization."""
        LU, pivots = torch.linalg.lu_factor(self.A)
        return torch.diagonal(LU).abs().log().sum()
''',
                forward="""        LU, pivots = torch.linalg.lu_factor(self.A)
        z = torch.linalg.lu_solve(LU, pivots, (x - self.b).T).T
        return z, -self.log_abs_det() * torch.ones(x.shape[0], dtype=x.dtype)
""",
                inverse="""        x = torch.einsum("ij,bj->bi", self.A, z) + self.b
        return x, self.log_abs_det() * torch.ones(z.shape[0], dtype=z.dtype)
""",
            ),
        },
    ),
    Rewrite(
        name="right_solve_det",
        description="rows solved from the right (left=False), log|det A| as log(abs(det A))",
        cells={
            "01_affine_bijector": _affine(
                forward="""        # z Aᵀ = x - b for every row z
        z = torch.linalg.solve(self.A.T, x - self.b, left=False)
        log_det = -torch.log(torch.abs(torch.det(self.A)))
        return z, log_det * torch.ones_like(x[:, 0])
""",
                inverse="""        x = torch.addmm(self.b, z, self.A.T)
        log_det = torch.log(torch.abs(torch.det(self.A)))
        return x, log_det * torch.ones_like(z[:, 0])
""",
            ),
        },
    ),
    Rewrite(
        name="loops_and_prints",
        description="loops over the entries and the samples, debug prints, float32 constants",
        cells={
            "01_affine_1d": '''def affine_log_density(x, scale, shift, base_log_prob):
    """log p_X(x) for X = scale * Z + shift; x of any shape, result of the same shape."""
    print("scale", scale, "shift", shift, "x", tuple(x.shape))
    log_abs_scale = torch.tensor(abs(scale), dtype=torch.float32).log()
    values = [base_log_prob((v - shift) / scale) - log_abs_scale for v in x.reshape(-1)]
    return torch.stack(values).reshape(x.shape)
''',
            "01_exp_normal": '''LOG_SQRT_2PI = 0.9189385332046727  # log sqrt(2 pi)


def exp_normal_log_density(x):
    """log p_X(x) for X = exp(Z), Z ~ N(0, 1); -inf where x <= 0."""
    out = torch.full_like(x, float("-inf"))
    positive = x > 0
    z = x[positive].log()
    out[positive] = -z * z / 2 - LOG_SQRT_2PI - z
    return out
''',
            "01_linear_log_density": '''def linear_log_density(x, A, b):
    """log p_X(x) for X = A Z + b, Z ~ N(0, I): x (B, D) -> (B,)."""
    bijector = AffineBijector(A, b)
    results = []
    for row in x:
        z, log_det = bijector.forward(row.unsqueeze(0))
        D = z.shape[1]
        results.append(-0.5 * (z[0] @ z[0]) - D / 2 * math.log(2 * math.pi) + log_det[0])
    print("computed", len(results), "log-densities")
    return torch.stack(results)
''',
        },
    ),
    Rewrite(
        name="helper_functions",
        description="helper functions, a change of variables written as log p_Z + log|f'|",
        cells={
            "01_affine_1d": '''def log_abs_derivative_of_normalizing_map(scale):
    # f(x) = (x - shift) / scale has f'(x) = 1 / scale
    return -math.log(abs(scale))


def affine_log_density(x, scale, shift, base_log_prob):
    """log p_X(x) for X = scale * Z + shift; x of any shape, result of the same shape."""
    normalize = lambda t: (t - shift) / scale  # noqa: E731
    return base_log_prob(normalize(x)) + log_abs_derivative_of_normalizing_map(scale)
''',
            "01_exp_normal": '''def standard_normal_log_prob(z):
    return -0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)


def exp_normal_log_density(x):
    """log p_X(x) for X = exp(Z), Z ~ N(0, 1); -inf where x <= 0."""
    z = torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))
    log_p = standard_normal_log_prob(z) - z
    return log_p.where(x > 0, torch.tensor(-math.inf, dtype=x.dtype))
''',
        },
    ),
    Rewrite(
        name="torch_func_derivative",
        description="the derivative f'(x) computed by torch.func.grad and vmap, not by hand",
        cells={
            "01_affine_1d": '''def affine_log_density(x, scale, shift, base_log_prob):
    """log p_X(x) for X = scale * Z + shift; x of any shape, result of the same shape."""

    def normalize(t):
        return (t - shift) / scale

    flat = x.reshape(-1)
    derivative = torch.func.vmap(torch.func.grad(normalize))(flat)
    return (base_log_prob(normalize(flat)) + derivative.abs().log()).reshape(x.shape)
''',
        },
    ),
]
