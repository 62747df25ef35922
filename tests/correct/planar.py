"""Correct submissions of assignment 03 (planar flow) in other styles (see
tests/correct/__init__.py)."""

from correct import Rewrite

GIVEN = '''class Planar(torch.nn.Module):
    """z = x + û tanh(wᵀx + b), with wᵀû > -1."""

    def __init__(self, dim, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(dim, generator=generator) / math.sqrt(dim))
        self.u = torch.nn.Parameter(torch.randn(dim, generator=generator) / math.sqrt(dim))
        self.b = torch.nn.Parameter(torch.zeros(()))
'''

CORRECT: list[Rewrite] = [
    Rewrite(
        name="safeguarded_newton",
        description="safeguarded Newton in the bracket (bisection where Newton leaves it), "
        "logaddexp for m, einsum for the forward",
        cells={
            "03_planar_forward": GIVEN
            + '''
    def u_hat(self):
        """û = u + (m(wᵀu) - wᵀu) w / ‖w‖², shape (D,)."""
        a = torch.dot(self.w, self.u)
        m = torch.logaddexp(torch.zeros_like(a), a) - 1
        return self.u + (m - a) / torch.dot(self.w, self.w) * self.w

    def log_abs_det(self, alpha):
        """log|1 + tanh'(α + b) wᵀû| for α = wᵀx of shape (B,): (B,)."""
        slope = 1 + torch.dot(self.w, self.u_hat()) / torch.cosh(alpha + self.b) ** 2
        return torch.log(torch.abs(slope))

    def forward(self, x):
        """x (B, D) -> (z (B, D), log_det (B,))."""
        alpha = torch.einsum("bd,d->b", x, self.w)
        shift = torch.einsum("b,d->bd", torch.tanh(alpha + self.b), self.u_hat())
        return x + shift, self.log_abs_det(alpha)
''',
            "03_planar_inverse": '''def planar_inverse(self, z):
    """z (B, D) -> (x (B, D), log_det (B,)) for the planar layer `self`."""
    u_hat = self.u_hat()
    c = self.w @ u_hat
    gamma = z @ self.w

    def residual_and_slope(a):
        tanh = torch.tanh(a + self.b)
        return a + c * tanh - gamma, 1 + c * (1 - tanh * tanh)

    with torch.no_grad():
        low, high = gamma - c.abs(), gamma + c.abs()
        alpha = (low + high) / 2
        for _ in range(60):
            r, slope = residual_and_slope(alpha)
            high = torch.where(r > 0, alpha, high)
            low = torch.where(r > 0, low, alpha)
            newton = alpha - r / slope
            inside = (newton > low) & (newton < high)
            alpha = torch.where(inside, newton, (low + high) / 2)
    r, slope = residual_and_slope(alpha)
    alpha = alpha - r / slope
    x = z - torch.tanh(alpha + self.b)[:, None] * u_hat[None, :]
    return x, -self.log_abs_det(alpha)


Planar.inverse = planar_inverse
''',
        },
    ),
    Rewrite(
        name="loop_over_samples_with_prints",
        description="bisection sample by sample on Python floats (math.tanh), a while loop to a "
        "tolerance, debug prints of tensors that require grad",
        cells={
            "03_planar_forward": GIVEN
            + '''
    def u_hat(self):
        """û = u + (m(wᵀu) - wᵀu) w / ‖w‖², shape (D,)."""
        w_dot_u = (self.w * self.u).sum()
        m = -1 + torch.log1p(torch.exp(w_dot_u))
        norm_sq = (self.w**2).sum()
        u_hat = self.u + (m - w_dot_u) * self.w / norm_sq
        print("wᵀû =", float(self.w @ u_hat))
        return u_hat

    def log_abs_det(self, alpha):
        """log|1 + tanh'(α + b) wᵀû| for α = wᵀx of shape (B,): (B,)."""
        derivative = 1 / torch.cosh(alpha + self.b) ** 2
        return torch.log1p(derivative * (self.w @ self.u_hat()))

    def forward(self, x):
        """x (B, D) -> (z (B, D), log_det (B,))."""
        alpha = (x * self.w).sum(dim=1)
        z = x + torch.outer(torch.tanh(alpha + self.b), self.u_hat())
        return z, self.log_abs_det(alpha)
''',
            "03_planar_inverse": '''def planar_inverse(self, z):
    """z (B, D) -> (x (B, D), log_det (B,)) for the planar layer `self`."""
    u_hat = self.u_hat()
    c = self.w @ u_hat
    gamma = z @ self.w
    c_value, b_value = c.item(), self.b.item()
    roots = []
    for g in gamma.tolist():
        low, high = g - abs(c_value), g + abs(c_value)
        while high - low > 1e-13 * max(1.0, abs(g)):
            middle = 0.5 * (low + high)
            if middle + c_value * math.tanh(middle + b_value) > g:
                high = middle
            else:
                low = middle
        roots.append(0.5 * (low + high))
    alpha = torch.tensor(roots, dtype=z.dtype)
    print("largest |α| in this batch:", max(abs(r) for r in roots))
    tanh = torch.tanh(alpha + self.b)
    alpha = alpha - (alpha + c * tanh - gamma) / (1 + c * (1 - tanh**2))
    return z - torch.tanh(alpha + self.b).unsqueeze(1) * u_hat, -self.log_abs_det(alpha)


Planar.inverse = planar_inverse
''',
        },
    ),
    Rewrite(
        name="bisection_then_newton_polish",
        description="40 halvings, then five Newton steps without gradients and the final one "
        "with them; the slope written as 1 + c·sech²",
        cells={
            "03_planar_inverse": '''def planar_inverse(self, z):
    """z (B, D) -> (x (B, D), log_det (B,)) for the planar layer `self`."""
    c = torch.dot(self.w, self.u_hat())
    gamma = torch.mv(z, self.w)
    with torch.no_grad():
        low = gamma - torch.abs(c)
        high = gamma + torch.abs(c)
        for _ in range(40):
            middle = 0.5 * (low + high)
            positive = middle + c * torch.tanh(middle + self.b) > gamma
            low, high = torch.where(positive, low, middle), torch.where(positive, middle, high)
        alpha = 0.5 * (low + high)
        for _ in range(5):
            sech_sq = 1 / torch.cosh(alpha + self.b) ** 2
            alpha -= (alpha + c * torch.tanh(alpha + self.b) - gamma) / (1 + c * sech_sq)
    sech_sq = 1 / torch.cosh(alpha + self.b) ** 2
    alpha = alpha - (alpha + c * torch.tanh(alpha + self.b) - gamma) / (1 + c * sech_sq)
    x = z - self.u_hat() * torch.tanh(alpha + self.b).reshape(-1, 1)
    return x, -self.log_abs_det(alpha)


Planar.inverse = planar_inverse
''',
        },
    ),
    Rewrite(
        name="float32_minded_casts",
        description="explicit dtype casts and dtype-matched constants everywhere, a bisection "
        "that stops on the bracket width, two differentiable Newton steps",
        cells={
            "03_planar_forward": GIVEN
            + '''
    def u_hat(self):
        """û = u + (m(wᵀu) - wᵀu) w / ‖w‖², shape (D,)."""
        w, u = self.w, self.u.to(self.w.dtype)
        w_dot_u = w @ u
        one = torch.ones((), dtype=w.dtype)
        m = torch.nn.functional.softplus(w_dot_u) - one
        return u + (m - w_dot_u) * w / torch.linalg.vector_norm(w) ** 2

    def log_abs_det(self, alpha):
        """log|1 + tanh'(α + b) wᵀû| for α = wᵀx of shape (B,): (B,)."""
        alpha = alpha.to(self.w.dtype)
        c = (self.w @ self.u_hat()).to(alpha.dtype)
        h_prime = torch.ones_like(alpha) - torch.tanh(alpha + self.b).square()
        return torch.log1p(h_prime * c)

    def forward(self, x):
        """x (B, D) -> (z (B, D), log_det (B,))."""
        x = x.to(self.w.dtype)
        alpha = x @ self.w
        z = x + torch.tanh(alpha + self.b)[:, None] * self.u_hat()[None, :]
        return z.to(x.dtype), self.log_abs_det(alpha).to(x.dtype)
''',
            "03_planar_inverse": '''def planar_inverse(self, z):
    """z (B, D) -> (x (B, D), log_det (B,)) for the planar layer `self`."""
    z = z.to(self.w.dtype)
    u_hat = self.u_hat()
    c = (self.w @ u_hat).to(z.dtype)
    gamma = (z @ self.w).to(z.dtype)
    resolution = torch.finfo(z.dtype).eps
    with torch.no_grad():
        low, high = gamma - c.abs(), gamma + c.abs()
        while bool(((high - low) > 4 * resolution * (1 + gamma.abs())).any()):
            middle = (low + high) / 2
            above = (middle + c * torch.tanh(middle + self.b) - gamma) > 0
            high = torch.where(above, middle, high)
            low = torch.where(above, low, middle)
        alpha = ((low + high) / 2).to(z.dtype)
    for _ in range(2):
        tanh = torch.tanh(alpha + self.b)
        alpha = alpha - (alpha + c * tanh - gamma) / (1 + c * (1 - tanh**2))
    x = z - torch.tanh(alpha + self.b).unsqueeze(-1) * u_hat.unsqueeze(0)
    return x.to(z.dtype), (-self.log_abs_det(alpha)).to(z.dtype)


Planar.inverse = planar_inverse
''',
        },
    ),
    Rewrite(
        name="scalar_map_helpers",
        description="module-level helpers for the scalar map φ(α) = α + c tanh(α + b) and its "
        "slope, û computed once per call, the inverse by bisection on the helpers",
        cells={
            "03_planar_forward": GIVEN
            + '''
    def u_hat(self):
        """û = u + (m(wᵀu) - wᵀu) w / ‖w‖², shape (D,)."""
        a = self.w @ self.u
        correction = torch.nn.functional.softplus(a) - 1 - a
        return self.u + correction * self.w / (self.w @ self.w)

    def log_abs_det(self, alpha):
        """log|1 + tanh'(α + b) wᵀû| for α = wᵀx of shape (B,): (B,)."""
        return torch.log(scalar_slope(alpha, self.w @ self.u_hat(), self.b))

    def forward(self, x):
        """x (B, D) -> (z (B, D), log_det (B,))."""
        u_hat = self.u_hat()
        alpha = x @ self.w
        c = self.w @ u_hat
        z = x + torch.tanh(alpha + self.b).unsqueeze(1) * u_hat
        return z, torch.log(scalar_slope(alpha, c, self.b))


def scalar_map(alpha, c, b):
    """φ(α) = α + c tanh(α + b), the planar map along w."""
    return alpha + c * torch.tanh(alpha + b)


def scalar_slope(alpha, c, b):
    """φ'(α) = 1 + c (1 - tanh²(α + b)) > 0."""
    return 1 + c * (1 - torch.tanh(alpha + b) ** 2)
''',
            "03_planar_inverse": '''def planar_inverse(self, z):
    """z (B, D) -> (x (B, D), log_det (B,)) for the planar layer `self`."""
    u_hat = self.u_hat()
    c = self.w @ u_hat
    gamma = z @ self.w
    with torch.no_grad():
        bracket = torch.stack([gamma - c.abs(), gamma + c.abs()])
        for _ in range(100):
            middle = bracket.mean(dim=0)
            too_high = scalar_map(middle, c, self.b) > gamma
            low = torch.where(too_high, bracket[0], middle)
            bracket = torch.stack([low, torch.where(too_high, middle, bracket[1])])
        root = bracket.mean(dim=0)
    alpha = root - (scalar_map(root, c, self.b) - gamma) / scalar_slope(root, c, self.b)
    x = z - torch.tanh(alpha + self.b).unsqueeze(1) * u_hat
    return x, -torch.log(scalar_slope(alpha, c, self.b))


Planar.inverse = planar_inverse
''',
        },
    ),
]
