"""Correct submissions of assignment 07 (invertible residual flows) in other styles (see
tests/correct/__init__.py)."""

from correct import Rewrite

CORRECT: list[Rewrite] = [
    Rewrite(
        name="helpers_and_matrix_power",
        description="helper functions, σ̂ as ‖Wv‖, an if on σ̂, a while loop, matrix_power",
        cells={
            "07_spectral": '''def _unit(vector):
    return vector / torch.linalg.vector_norm(vector)


def spectral_normalize(weight, u, bound, n_iterations):
    """W (m, n), persistent unit vector u (m,) -> W / max(1, σ̂/c), (m, n); updates u in place."""
    with torch.no_grad():
        for _ in range(n_iterations):
            v = _unit(weight.T @ u)
            u[:] = _unit(weight @ v)
    # With u = Wv/‖Wv‖, uᵀWv is ‖Wv‖.
    sigma = torch.linalg.vector_norm(weight @ v)
    if sigma > bound:
        return weight * (bound / sigma)
    return weight
''',
            "07_fixed_point": '''def fixed_point_inverse(residual, z, tol, max_iter):
    """Solve x + residual(x) = z for x by x ← z - residual(x): z (B, D) -> x (B, D)."""
    x = z.detach().clone()
    steps = 0
    while True:
        with torch.no_grad():
            error = torch.max(torch.abs(x + residual(x) - z)).item()
        if error <= tol:
            return x
        if steps == max_iter:
            raise RuntimeError(f"no convergence after {max_iter} steps (error {error:.2e})")
        with torch.no_grad():
            x = z - residual(x)
        steps += 1
''',
            "07_series": '''def series_log_det(jacobian, n_terms):
    """Σ_{k=1}^{n} (-1)^{k+1} tr(J^k) / k per sample: J (B, D, D) -> (B,)."""
    total = 0
    for k in range(1, n_terms + 1):
        sign = 1 if k % 2 == 1 else -1
        power = torch.linalg.matrix_power(jacobian, k)
        total = total + sign * power.diagonal(dim1=-2, dim2=-1).sum(-1) / k
    return total
''',
        },
    ),
    Rewrite(
        name="masks_and_einsum",
        description="a local copy of u written back once, per-sample masks, einsum traces",
        cells={
            "07_spectral": '''def spectral_normalize(weight, u, bound, n_iterations):
    """W (m, n), persistent unit vector u (m,) -> W / max(1, σ̂/c), (m, n); updates u in place."""
    left = u.detach().clone()
    with torch.no_grad():
        for _ in range(n_iterations):
            right = torch.mv(weight.t(), left)
            right = right / right.norm()
            left = torch.mv(weight, right)
            left = left / left.norm()
    u.copy_(left)
    sigma_hat = torch.dot(left, torch.mv(weight, right))
    scale = torch.maximum(torch.ones((), dtype=weight.dtype), sigma_hat / bound)
    return weight / scale
''',
            "07_fixed_point": '''@torch.no_grad()
def fixed_point_inverse(residual, z, tol, max_iter):
    """Solve x + residual(x) = z for x by x ← z - residual(x): z (B, D) -> x (B, D)."""
    x = z.clone()
    done = torch.zeros(z.shape[0], dtype=torch.bool)
    for _ in range(max_iter):
        gap = x + residual(x) - z
        done = gap.abs().amax(dim=1) <= tol
        if bool(done.all()):
            return x
        # samples already within tol stay where they are
        x = torch.where(done.unsqueeze(1), x, x - gap)
    raise RuntimeError(
        f"fixed-point iteration did not converge: {int((~done).sum())} samples above tol"
    )
''',
            "07_series": '''def series_log_det(jacobian, n_terms):
    """Σ_{k=1}^{n} (-1)^{k+1} tr(J^k) / k per sample: J (B, D, D) -> (B,)."""
    result = torch.zeros(jacobian.shape[0], dtype=jacobian.dtype)
    power = jacobian
    for k in range(1, n_terms + 1):
        if k > 1:
            power = torch.bmm(power, jacobian)
        result = result + (-1.0) ** (k + 1) / k * torch.einsum("bii->b", power)
    return result
''',
        },
    ),
    Rewrite(
        name="float32_minded",
        description="explicit dtypes and devices everywhere, normalize with eps, detached results",
        cells={
            "07_spectral": '''def spectral_normalize(weight, u, bound, n_iterations):
    """W (m, n), persistent unit vector u (m,) -> W / max(1, σ̂/c), (m, n); updates u in place."""
    normalize = torch.nn.functional.normalize
    with torch.no_grad():
        estimate = u.to(weight.dtype)
        for _ in range(n_iterations):
            v = normalize(weight.T @ estimate, dim=0, eps=1e-30)
            estimate = normalize(weight @ v, dim=0, eps=1e-30)
        u.copy_(estimate.to(u.dtype))
    sigma = estimate @ weight @ v
    one = torch.tensor(1.0, dtype=weight.dtype, device=weight.device)
    return weight / torch.max(one, sigma / bound)
''',
            "07_fixed_point": '''def fixed_point_inverse(residual, z, tol, max_iter):
    """Solve x + residual(x) = z for x by x ← z - residual(x): z (B, D) -> x (B, D)."""
    with torch.no_grad():
        x = torch.empty_like(z).copy_(z)
        for iteration in range(max_iter):
            r_x = residual(x).to(z.dtype)
            worst = (x + r_x - z).abs().amax()
            if worst.item() <= tol:
                return x.detach()
            x = z - r_x
    raise RuntimeError(
        "fixed_point_inverse: not converged after %d iterations (max error %.3e)"
        % (max_iter, worst.item())
    )
''',
            "07_series": '''def series_log_det(jacobian, n_terms):
    """Σ_{k=1}^{n} (-1)^{k+1} tr(J^k) / k per sample: J (B, D, D) -> (B,)."""
    batch, dim, _ = jacobian.shape
    eye = torch.eye(dim, dtype=jacobian.dtype, device=jacobian.device)
    power = eye.repeat(batch, 1, 1)
    log_det = torch.zeros(batch, dtype=jacobian.dtype, device=jacobian.device)
    for k in range(1, n_terms + 1):
        power = torch.matmul(power, jacobian)
        coefficient = (1.0 if k % 2 else -1.0) / float(k)
        log_det = log_det + coefficient * power.diagonal(0, 1, 2).sum(1)
    return log_det
''',
        },
    ),
    Rewrite(
        name="debug_prints",
        description="the reference with debugging prints in every function",
        cells={
            "07_spectral": '''def spectral_normalize(weight, u, bound, n_iterations):
    """W (m, n), persistent unit vector u (m,) -> W / max(1, σ̂/c), (m, n); updates u in place."""
    print("spectral_normalize: weight", tuple(weight.shape), "bound", bound)
    with torch.no_grad():
        for step in range(n_iterations):
            v = torch.nn.functional.normalize(weight.T @ u, dim=0)
            u.copy_(torch.nn.functional.normalize(weight @ v, dim=0))
    sigma = u @ weight @ v
    print("  sigma_hat =", sigma.item(), "after", n_iterations, "iterations")
    return weight / torch.clamp(sigma / bound, min=1.0)
''',
            "07_fixed_point": '''def fixed_point_inverse(residual, z, tol, max_iter):
    """Solve x + residual(x) = z for x by x ← z - residual(x): z (B, D) -> x (B, D)."""
    with torch.no_grad():
        x = z.clone()
        for k in range(max_iter):
            r_x = residual(x)
            error = float((x + r_x - z).abs().max())
            if k % 50 == 0:
                print(f"iteration {k}: error {error:.3e}")
            if error <= tol:
                print(f"converged after {k} iterations")
                return x
            x = z - r_x
    print("giving up")
    raise RuntimeError(f"did not converge in {max_iter} iterations, error {error}")
''',
            "07_series": '''def series_log_det(jacobian, n_terms):
    """Σ_{k=1}^{n} (-1)^{k+1} tr(J^k) / k per sample: J (B, D, D) -> (B,)."""
    log_det = jacobian.new_zeros(jacobian.shape[0])
    power = torch.eye(jacobian.shape[1], dtype=jacobian.dtype).expand_as(jacobian)
    for k in range(1, n_terms + 1):
        power = power @ jacobian
        trace = torch.diagonal(power, dim1=1, dim2=2).sum(dim=1)
        log_det = log_det + (-1) ** (k + 1) * trace / k
        print(f"term {k}: mean partial sum {log_det.mean().item():.6f}")
    return log_det
''',
        },
    ),
    Rewrite(
        name="vectorized_and_step_rule",
        description="torch.where for the bound, a stopping rule on the step size, stacked powers",
        cells={
            "07_spectral": '''def spectral_normalize(weight, u, bound, n_iterations):
    """W (m, n), persistent unit vector u (m,) -> W / max(1, σ̂/c), (m, n); updates u in place."""
    with torch.no_grad():
        for _ in range(n_iterations):
            v = weight.T @ u
            v /= torch.linalg.norm(v)
            new_u = weight @ v
            u.copy_(new_u / torch.linalg.norm(new_u))
    sigma = torch.einsum("i,ij,j->", u, weight, v)
    return torch.where(sigma > bound, weight * bound / sigma, weight)
''',
            "07_fixed_point": '''def fixed_point_inverse(residual, z, tol, max_iter):
    """Solve x + residual(x) = z for x by x ← z - residual(x): z (B, D) -> x (B, D)."""
    x = z.detach().clone()
    for _ in range(max_iter):
        with torch.no_grad():
            x_next = z - residual(x)
        # x_next - x = -(x + r(x) - z): a small step is a small residual
        if (x_next - x).abs().max() <= tol:
            return x
        x = x_next
    raise RuntimeError("fixed_point_inverse did not converge within max_iter steps")
''',
            "07_series": '''def series_log_det(jacobian, n_terms):
    """Σ_{k=1}^{n} (-1)^{k+1} tr(J^k) / k per sample: J (B, D, D) -> (B,)."""
    powers = [jacobian]
    while len(powers) < n_terms:
        powers.append(powers[-1] @ jacobian)
    traces = torch.stack([p.diagonal(dim1=1, dim2=2).sum(dim=1) for p in powers], dim=1)
    k = torch.arange(1, n_terms + 1, dtype=jacobian.dtype)
    coefficients = torch.where(k % 2 == 1, 1.0, -1.0) / k
    return traces @ coefficients
''',
        },
    ),
]
