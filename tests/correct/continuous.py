"""Correct submissions of assignment 08 (continuous-in-time flows) in other styles (see
tests/correct/__init__.py)."""

from correct import Rewrite

# The given class around the solution lines, shared by the rewrites of the CNF cell.
FIXED_STEP_CNF = '''

class FixedStepCNF(nn.Module):
    """The time-t1 map of dz/dt = field(t, z) from z(t0) = x, with Euler or RK4 steps."""

    def __init__(self, field, div, *, t0=0.0, t1=1.0, steps=20, method="rk4"):
        super().__init__()
        if method not in ("euler", "rk4"):
            raise ValueError(f"method must be 'euler' or 'rk4', got {method!r}")
        if not (isinstance(steps, int) and steps > 0):
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        self.field, self.div = field, div
        self.t0, self.t1, self.steps, self.method = t0, t1, steps, method
'''

CORRECT: list[Rewrite] = [
    Rewrite(
        name="joint_state_and_bernoulli",
        description="one-hot grad_outputs, Bernoulli signs, RK4 on the joint state [z, ℓ]",
        cells={
            "08_divergence": '''def divergence(field, z):
    """tr(∂field/∂z) of every sample, by D backward passes: z (B, D) -> (B,)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = field(z)
        total = torch.zeros(z.shape[0], dtype=z.dtype)
        for i in range(z.shape[1]):
            onehot = torch.zeros_like(out)
            onehot[:, i] = 1.0
            (grad,) = torch.autograd.grad(out, z, grad_outputs=onehot, retain_graph=True)
            total = total + grad[:, i]
    return total
''',
            "08_hutchinson": '''def hutchinson_divergence(field, z, generator, noise="gaussian"):
    """εᵀ (∂field/∂z) ε per sample, one vector-Jacobian product: z (B, D) -> (B,)."""
    if noise not in ("gaussian", "rademacher"):
        raise ValueError("unknown noise " + repr(noise))
    if noise == "gaussian":
        eps = torch.empty(z.shape, dtype=z.dtype).normal_(generator=generator)
    else:
        half = torch.full(z.shape, 0.5, dtype=z.dtype)
        eps = 2 * torch.bernoulli(half, generator=generator) - 1
    with torch.enable_grad():
        y = z.detach().requires_grad_(True)
        (vjp,) = torch.autograd.grad((field(y) * eps).sum(), y)
    return torch.einsum("bd,bd->b", vjp, eps)
''',
            "08_cnf": '''def _joint(field, div, t, state):
    """The slope of the joint state [z, ℓ], (B, D + 1)."""
    z = state[:, :-1]
    return torch.cat([field(t, z), div(t, z).unsqueeze(1)], dim=1)


def euler_step(field, div, t, z, h):
    """One Euler step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    state = torch.cat([z, z.new_zeros(z.shape[0], 1)], dim=1)
    new = state + h * _joint(field, div, t, state)
    return new[:, :-1], new[:, -1]


def rk4_step(field, div, t, z, h):
    """One classical RK4 step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    state = torch.cat([z, z.new_zeros(z.shape[0], 1)], dim=1)
    slopes = []
    for c, a in ((0.0, 0.0), (0.5, 0.5), (0.5, 0.5), (1.0, 1.0)):
        point = state if not slopes else state + a * h * slopes[-1]
        slopes.append(_joint(field, div, t + c * h, point))
    weights = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    new = state + h * sum(w * k for w, k in zip(weights, slopes))
    return new[:, :-1], new[:, -1]


def integrate(field, div, z, t_start, t_end, steps, method):
    """(z(t_end) (B, D), ∫ div dt from t_start to t_end (B,)) by `steps` equal steps."""
    step = euler_step if method == "euler" else rk4_step
    h = (t_end - t_start) / steps
    total = 0.0
    for k in range(steps):
        z, increment = step(field, div, t_start + k * h, z, h)
        total = total + increment
    return z, total
'''
            + FIXED_STEP_CNF
            + '''
    def forward(self, x):
        """x = z(t0) (B, D) -> (z(t1) (B, D), +∫_{t0}^{t1} div dt (B,))."""
        return integrate(self.field, self.div, x, self.t0, self.t1, self.steps, self.method)

    def inverse(self, z):
        """z = z(t1) (B, D) -> (z(t0) (B, D), -∫_{t0}^{t1} div dt (B,))."""
        return integrate(self.field, self.div, z, self.t1, self.t0, self.steps, self.method)
''',
        },
    ),
    Rewrite(
        name="torch_func_and_reversed_field",
        description="torch.func vjp/jvp, and the inverse as the reversed-time field run forward",
        cells={
            "08_divergence": '''def divergence(field, z):
    """tr(∂field/∂z) of every sample, by D backward passes: z (B, D) -> (B,)."""
    _, pullback = torch.func.vjp(field, z.detach())
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    diagonal = [pullback(eye[i].expand_as(z))[0][:, i] for i in range(z.shape[1])]
    return sum(diagonal)
''',
            "08_hutchinson": '''def hutchinson_divergence(field, z, generator, noise="gaussian"):
    """εᵀ (∂field/∂z) ε per sample, one vector-Jacobian product: z (B, D) -> (B,)."""
    draws = {
        "gaussian": lambda: torch.randn(z.shape, generator=generator, dtype=z.dtype),
        "rademacher": lambda: torch.randint(0, 2, z.shape, generator=generator).to(z.dtype)
        * 2
        - 1,
    }
    if noise not in draws:
        raise ValueError(f"noise must be one of {sorted(draws)}")
    epsilon = draws[noise]()
    # forward mode: J ε, then εᵀ (J ε)
    _, j_eps = torch.func.jvp(field, (z.detach(),), (epsilon,))
    return (epsilon * j_eps).sum(-1)
''',
            "08_cnf": '''def euler_step(field, div, t, z, h):
    """One Euler step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    slope = field(t, z)
    return z + h * slope, h * div(t, z)


def rk4_step(field, div, t, z, h):
    """One classical RK4 step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    k1 = field(t, z)
    k2 = field(t + 0.5 * h, z + 0.5 * h * k1)
    k3 = field(t + 0.5 * h, z + 0.5 * h * k2)
    k4 = field(t + h, z + h * k3)
    l1 = div(t, z)
    l2 = div(t + 0.5 * h, z + 0.5 * h * k1)
    l3 = div(t + 0.5 * h, z + 0.5 * h * k2)
    l4 = div(t + h, z + h * k3)
    return z + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4), (h / 6) * (l1 + 2 * l2 + 2 * l3 + l4)


def integrate(field, div, z, t_start, t_end, steps, method):
    """(z(t_end) (B, D), ∫ div dt from t_start to t_end (B,)) by `steps` equal steps."""
    h = (t_end - t_start) / steps
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    for k in range(steps):
        if method == "euler":
            z, dl = euler_step(field, div, t_start + k * h, z, h)
        else:
            z, dl = rk4_step(field, div, t_start + k * h, z, h)
        log_det = log_det + dl
    return z, log_det
'''
            + FIXED_STEP_CNF
            + '''
    def forward(self, x):
        """x = z(t0) (B, D) -> (z(t1) (B, D), +∫_{t0}^{t1} div dt (B,))."""
        return integrate(self.field, self.div, x, self.t0, self.t1, self.steps, self.method)

    def inverse(self, z):
        """z = z(t1) (B, D) -> (z(t0) (B, D), -∫_{t0}^{t1} div dt (B,))."""
        # s = t0 + t1 - t runs from t0 to t1 while t runs back from t1 to t0
        mirror = self.t0 + self.t1
        field = lambda s, y: -self.field(mirror - s, y)  # noqa: E731
        div = lambda s, y: -self.div(mirror - s, y)  # noqa: E731
        return integrate(field, div, z, self.t0, self.t1, self.steps, self.method)
''',
        },
    ),
    Rewrite(
        name="float32_minded",
        description="explicit dtypes, tensor times (torch.linspace), sign of Gaussian noise",
        cells={
            "08_divergence": '''def divergence(field, z):
    """tr(∂field/∂z) of every sample, by D backward passes: z (B, D) -> (B,)."""
    with torch.enable_grad():
        z = z.detach().clone().to(torch.get_default_dtype()).requires_grad_(True)
        dz = field(z)
        trace = torch.zeros(z.shape[0], dtype=dz.dtype, device=dz.device)
        for i in range(dz.shape[-1]):
            grad_i = torch.autograd.grad(dz[..., i].sum(), z, retain_graph=i + 1 < dz.shape[-1])
            trace += grad_i[0][..., i]
    return trace.detach()
''',
            "08_hutchinson": '''def hutchinson_divergence(field, z, generator, noise="gaussian"):
    """εᵀ (∂field/∂z) ε per sample, one vector-Jacobian product: z (B, D) -> (B,)."""
    if noise == "gaussian":
        epsilon = torch.randn(tuple(z.shape), generator=generator, dtype=z.dtype, device=z.device)
    elif noise == "rademacher":
        # the sign of a Gaussian is ±1 with probability 1/2 each (0 has probability 0)
        gaussian = torch.randn(tuple(z.shape), generator=generator, dtype=z.dtype)
        epsilon = torch.sign(gaussian)
    else:
        raise ValueError(f"noise={noise!r}: expected 'gaussian' or 'rademacher'")
    with torch.enable_grad():
        z_in = z.detach().to(epsilon.dtype).requires_grad_()
        out = field(z_in)
        vjp = torch.autograd.grad(out, z_in, grad_outputs=epsilon.to(out.dtype))[0]
    return torch.sum(vjp * epsilon, dim=-1)
''',
            "08_cnf": '''def euler_step(field, div, t, z, h):
    """One Euler step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    return z + h * field(t, z), h * div(t, z).to(z.dtype)


def rk4_step(field, div, t, z, h):
    """One classical RK4 step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    half = h / 2
    points = [z]
    slopes = [field(t, z)]
    for dt, scale in ((half, half), (half, half), (h, h)):
        points.append(z + scale * slopes[-1])
        slopes.append(field(t + dt, points[-1]))
    times = (t, t + half, t + half, t + h)
    divs = [div(s, p).to(z.dtype) for s, p in zip(times, points)]
    z_next = z + h * (slopes[0] + 2 * slopes[1] + 2 * slopes[2] + slopes[3]) / 6
    return z_next, h * (divs[0] + 2 * divs[1] + 2 * divs[2] + divs[3]) / 6


def integrate(field, div, z, t_start, t_end, steps, method):
    """(z(t_end) (B, D), ∫ div dt from t_start to t_end (B,)) by `steps` equal steps."""
    times = torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)
    step = {"euler": euler_step, "rk4": rk4_step}[method]
    log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for k in range(steps):
        h = (t_end - t_start) / steps
        z, increment = step(field, div, times[k], z, h)
        log_det = log_det + increment
    return z, log_det
'''
            + FIXED_STEP_CNF
            + '''
    def forward(self, x):
        """x = z(t0) (B, D) -> (z(t1) (B, D), +∫_{t0}^{t1} div dt (B,))."""
        z, log_det = integrate(self.field, self.div, x, self.t0, self.t1, self.steps, self.method)
        return z, log_det

    def inverse(self, z):
        """z = z(t1) (B, D) -> (z(t0) (B, D), -∫_{t0}^{t1} div dt (B,))."""
        x, log_det = integrate(self.field, self.div, z, self.t1, self.t0, self.steps, self.method)
        return x, log_det
''',
        },
    ),
    Rewrite(
        name="debug_prints",
        description="the reference with debugging prints in every function",
        cells={
            "08_divergence": '''def divergence(field, z):
    """tr(∂field/∂z) of every sample, by D backward passes: z (B, D) -> (B,)."""
    print("divergence of a batch of shape", tuple(z.shape))
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        dz = field(z)
        diagonal = []
        for i in range(z.shape[1]):
            (row,) = torch.autograd.grad(dz[:, i].sum(), z, retain_graph=True)
            diagonal.append(row[:, i])
    result = torch.stack(diagonal, dim=1).sum(dim=1)
    print("  first values:", result[:3].tolist())
    return result
''',
            "08_hutchinson": '''def hutchinson_divergence(field, z, generator, noise="gaussian"):
    """εᵀ (∂field/∂z) ε per sample, one vector-Jacobian product: z (B, D) -> (B,)."""
    print(f"hutchinson: noise={noise}, batch={z.shape[0]}")
    if noise == "gaussian":
        epsilon = torch.randn(z.shape, generator=generator, dtype=z.dtype)
    elif noise == "rademacher":
        signs = torch.randint(0, 2, z.shape, generator=generator)
        epsilon = (2 * signs - 1).to(z.dtype)
    else:
        print("bad noise", noise)
        raise ValueError(f"noise must be 'gaussian' or 'rademacher', got {noise!r}")
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        dz = field(z)
        (vjp,) = torch.autograd.grad(dz, z, grad_outputs=epsilon)
    estimate = (vjp * epsilon).sum(dim=1)
    print("  mean estimate", estimate.mean().item())
    return estimate
''',
            "08_cnf": '''def euler_step(field, div, t, z, h):
    """One Euler step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    return z + h * field(t, z), h * div(t, z)


def rk4_step(field, div, t, z, h):
    """One classical RK4 step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    k1, d1 = field(t, z), div(t, z)
    y2 = z + h / 2 * k1
    k2, d2 = field(t + h / 2, y2), div(t + h / 2, y2)
    y3 = z + h / 2 * k2
    k3, d3 = field(t + h / 2, y3), div(t + h / 2, y3)
    y4 = z + h * k3
    k4, d4 = field(t + h, y4), div(t + h, y4)
    return z + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6, h * (d1 + 2 * d2 + 2 * d3 + d4) / 6


def integrate(field, div, z, t_start, t_end, steps, method):
    """(z(t_end) (B, D), ∫ div dt from t_start to t_end (B,)) by `steps` equal steps."""
    print(f"integrate {method} from {t_start} to {t_end} in {steps} steps")
    step = {"euler": euler_step, "rk4": rk4_step}[method]
    h = (t_end - t_start) / steps
    log_det = z.new_zeros(z.shape[0])
    for k in range(steps):
        z, increment = step(field, div, t_start + k * h, z, h)
        log_det = log_det + increment
    print("  final mean log-det", log_det.mean().item())
    return z, log_det
'''
            + FIXED_STEP_CNF
            + '''
    def forward(self, x):
        """x = z(t0) (B, D) -> (z(t1) (B, D), +∫_{t0}^{t1} div dt (B,))."""
        print("forward", tuple(x.shape))
        return integrate(self.field, self.div, x, self.t0, self.t1, self.steps, self.method)

    def inverse(self, z):
        """z = z(t1) (B, D) -> (z(t0) (B, D), -∫_{t0}^{t1} div dt (B,))."""
        print("inverse", tuple(z.shape))
        return integrate(self.field, self.div, z, self.t1, self.t0, self.steps, self.method)
''',
        },
    ),
    Rewrite(
        name="per_sample_loops",
        description="loops over samples and stages, time advanced by t = t + h, keyword arguments",
        cells={
            "08_divergence": '''def divergence(field, z):
    """tr(∂field/∂z) of every sample, by D backward passes: z (B, D) -> (B,)."""
    values = []
    for sample in z.detach():
        point = sample.unsqueeze(0).requires_grad_(True)
        with torch.enable_grad():
            out = field(point)[0]
            trace = 0.0
            for i in range(len(sample)):
                (grad,) = torch.autograd.grad(out[i], point, retain_graph=True)
                trace = trace + grad[0, i]
        values.append(trace)
    return torch.stack(values)
''',
            "08_hutchinson": '''def hutchinson_divergence(field, z, generator, noise="gaussian"):
    """εᵀ (∂field/∂z) ε per sample, one vector-Jacobian product: z (B, D) -> (B,)."""
    batch, dim = z.shape
    if noise == "rademacher":
        epsilon = torch.randint(0, 2, (batch, dim), generator=generator).double() * 2 - 1
    elif noise == "gaussian":
        epsilon = torch.randn(batch, dim, generator=generator)
    else:
        raise ValueError(noise)
    point = z.detach().requires_grad_(True)
    with torch.enable_grad():
        vjp = torch.autograd.grad(field(point), point, epsilon)[0]
    return torch.stack([vjp[b] @ epsilon[b] for b in range(batch)])
''',
            "08_cnf": '''def euler_step(field, div, t, z, h):
    """One Euler step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    dz = field(t, z)
    dl = div(t, z)
    return z + dz * h, dl * h


def rk4_step(field, div, t, z, h):
    """One classical RK4 step of (z, ℓ): returns (z at t + h (B, D), increment of ℓ (B,))."""
    dz_total = torch.zeros_like(z)
    dl_total = torch.zeros(z.shape[0], dtype=z.dtype)
    slope = None
    for offset, weight in ((0.0, 1.0), (0.5, 2.0), (0.5, 2.0), (1.0, 1.0)):
        point = z if slope is None else z + offset * h * slope
        slope = field(t + offset * h, point)
        dz_total = dz_total + weight * slope
        dl_total = dl_total + weight * div(t + offset * h, point)
    return z + h / 6 * dz_total, h / 6 * dl_total


def integrate(field, div, z, t_start, t_end, steps, method):
    """(z(t_end) (B, D), ∫ div dt from t_start to t_end (B,)) by `steps` equal steps."""
    h = (t_end - t_start) / steps
    increments = []
    t = t_start
    for _ in range(steps):
        if method == "rk4":
            z, dl = rk4_step(field, div, t, z, h)
        elif method == "euler":
            z, dl = euler_step(field, div, t, z, h)
        increments.append(dl)
        t = t + h
    return z, torch.stack(increments).sum(dim=0)
'''
            + FIXED_STEP_CNF
            + '''
    def forward(self, x):
        """x = z(t0) (B, D) -> (z(t1) (B, D), +∫_{t0}^{t1} div dt (B,))."""
        solver = dict(steps=self.steps, method=self.method)
        return integrate(self.field, self.div, x, self.t0, self.t1, **solver)

    def inverse(self, z):
        """z = z(t1) (B, D) -> (z(t0) (B, D), -∫_{t0}^{t1} div dt (B,))."""
        solver = dict(steps=self.steps, method=self.method)
        return integrate(self.field, self.div, z, self.t1, self.t0, **solver)
''',
        },
    ),
]
