"""Correct submissions of the assignment in other styles (see tests/correct/__init__.py)."""

from correct import Rewrite

# The given constructor of LinearLU (the student's cell holds it as released).
_LU_INIT = '''class LinearLU(torch.nn.Module):
    """z = W x with W = P L U; log|det W| = sum(log_s)."""

    def __init__(self, dim, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        W0 = torch.linalg.qr(torch.randn(dim, dim, generator=generator)).Q
        P, L, U = torch.linalg.lu(W0)
        s = torch.diagonal(U)
        self.register_buffer("P", P)
        self.register_buffer("sign_s", torch.sign(s))
        self.L = torch.nn.Parameter(torch.tril(L, diagonal=-1))
        self.U = torch.nn.Parameter(torch.triu(U, diagonal=1))
        self.log_s = torch.nn.Parameter(torch.log(torch.abs(s)))
'''

# The given parts of the Permutation cell, around what a student writes.
_PERMUTATION_HEAD = '''class Permutation(torch.nn.Module):
    """z[:, i] = x[:, perm[i]]; log_det = 0."""

    def __init__(self, perm):
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
'''


def _permutation(init: str, forward: str, inverse: str) -> str:
    """The Permutation cell with the student's check in ``__init__`` and the two method bodies
    (each indented by 8 spaces)."""
    return (
        _PERMUTATION_HEAD
        + init
        + '''        self.register_buffer("perm", perm)

    def forward(self, x):
        """x (B, D) -> (z (B, D), log_det (B,))."""
'''
        + forward
        + '''
    def inverse(self, z):
        """z (B, D) -> (x (B, D), log_det (B,))."""
'''
        + inverse
    )


CORRECT = [
    Rewrite(
        name="loops",
        description="Python loops: columns gathered one by one, the inverse list built by hand",
        cells={
            "02_permutation": _permutation(
                init="""        values = perm.tolist()
        if sorted(values) != list(range(len(values))):
            raise ValueError(f"{values} is not a permutation of 0..{len(values) - 1}")
        inverse = [0] * len(values)
        for i, p in enumerate(values):
            inverse[p] = i
        self.inverse_list = inverse
""",
                forward="""        columns = [x[:, p] for p in self.perm.tolist()]
        return torch.stack(columns, dim=1), torch.zeros(x.shape[0], dtype=x.dtype)
""",
                inverse="""        columns = [z[:, p] for p in self.inverse_list]
        return torch.stack(columns, dim=1), torch.zeros(z.shape[0], dtype=z.dtype)
""",
            ),
        },
    ),
    Rewrite(
        name="permutation_matrix",
        description="a one-hot permutation matrix as a buffer, applied by matrix products",
        cells={
            "02_permutation": _permutation(
                init="""        n = len(perm)
        if set(perm.tolist()) != set(range(n)):  # a repeat would leave a value out
            raise ValueError("perm must contain each of 0, ..., D-1 exactly once")
        self.register_buffer("matrix", torch.eye(n)[perm])  # row i is the unit vector perm[i]
""",
                forward="""        return x @ self.matrix.T, torch.zeros(len(x))
""",
                inverse="""        return z @ self.matrix, torch.zeros(len(z))
""",
            ),
        },
    ),
    Rewrite(
        name="index_ops",
        description="index_select forward, scatter into a new tensor for the inverse, bincount",
        cells={
            "02_permutation": _permutation(
                init="""        n = perm.numel()
        if perm.min() < 0 or perm.max() >= n or (torch.bincount(perm, minlength=n) != 1).any():
            raise ValueError(f"not a permutation: {perm.tolist()}")
""",
                forward="""        z = torch.index_select(x, 1, self.perm)
        return z, torch.zeros_like(x[:, 0])
""",
                inverse="""        x = torch.zeros_like(z)
        x[:, self.perm] = z  # x[:, perm[i]] = z[:, i]
        return x, torch.zeros_like(z[:, 0])
""",
            ),
        },
    ),
    Rewrite(
        name="row_solves",
        description="triangular solves on row vectors from the right (left=False), cached masks",
        cells={
            "02_linear_lu": _LU_INIT
            + '''        self.register_buffer("lower", torch.ones(dim, dim).tril(-1))
        self.register_buffer("upper", torch.ones(dim, dim).triu(1))
        self.register_buffer("eye", torch.eye(dim))

    def factors(self):
        """The factors (L, U): L unit lower triangular, U upper triangular with diagonal s."""
        L = self.L * self.lower + self.eye
        U = self.U * self.upper + torch.diag_embed(self.sign_s * self.log_s.exp())
        return L, U

    def weight(self):
        """W = P L U, (D, D)."""
        return torch.linalg.multi_dot([self.P, *self.factors()])

    def forward(self, x):
        """x (B, D) -> (z = W x (B, D), log|det W| (B,))."""
        return x @ self.weight().T, self.log_s.sum() * torch.ones_like(x[:, 0])

    def inverse(self, z):
        """z (B, D) -> (x = W^{-1} z (B, D), -log|det W| (B,))."""
        L, U = self.factors()
        # rows: z = x Uᵀ Lᵀ Pᵀ, so solve y Lᵀ = z P, then x Uᵀ = y
        y = torch.linalg.solve_triangular(L.T, z @ self.P, upper=True, left=False)
        x = torch.linalg.solve_triangular(U.T, y, upper=False, left=False)
        return x, -self.log_s.sum() * torch.ones_like(z[:, 0])
''',
        },
    ),
    Rewrite(
        name="diagonal_log_det",
        description="log|det W| read off the diagonal of U, P applied by indexing, einsum",
        cells={
            "02_linear_lu": _LU_INIT
            + '''
    def factors(self):
        """The factors (L, U): L unit lower triangular, U upper triangular with diagonal s."""
        n = self.L.shape[0]
        L = self.L.tril(-1) + torch.eye(n, dtype=torch.float32)
        U = self.U.triu(1) + torch.diag(self.sign_s) @ torch.diag(self.log_s.exp())
        return L, U

    def log_abs_det(self):
        L, U = self.factors()
        return torch.diagonal(U).abs().log().sum()

    def weight(self):
        """W = P L U, (D, D)."""
        L, U = self.factors()
        order = self.P.argmax(dim=1)  # P[i, order[i]] = 1
        return (L @ U)[order]

    def forward(self, x):
        """x (B, D) -> (z = W x (B, D), log|det W| (B,))."""
        z = torch.einsum("ij,bj->bi", self.weight(), x)
        return z, self.log_abs_det().expand(len(x))

    def inverse(self, z):
        """z (B, D) -> (x = W^{-1} z (B, D), -log|det W| (B,))."""
        L, U = self.factors()
        rhs = (z @ self.P).T  # Pᵀ z for every sample, as columns
        y = torch.linalg.solve_triangular(L, rhs, upper=False)
        x = torch.linalg.solve_triangular(U, y, upper=True)
        return x.T, -self.log_abs_det().expand(len(z))
''',
        },
    ),
    Rewrite(
        name="cached_transpose_and_prints",
        description="Pᵀ cached as a buffer (P never trains), a debug print in forward",
        cells={
            "02_linear_lu": _LU_INIT
            + '''        self.register_buffer("P_T", P.T.contiguous())

    def factors(self):
        """The factors (L, U): L unit lower triangular, U upper triangular with diagonal s."""
        eye = torch.eye(self.L.shape[0], dtype=self.L.dtype)
        L = torch.tril(self.L, diagonal=-1) + eye
        U = torch.triu(self.U, diagonal=1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return L, U

    def weight(self):
        """W = P L U, (D, D)."""
        L, U = self.factors()
        return self.P @ (L @ U)

    def forward(self, x):
        """x (B, D) -> (z = W x (B, D), log|det W| (B,))."""
        W = self.weight()
        print("forward: batch", tuple(x.shape), "log|det W| =", self.log_s.detach().sum())
        return (W @ x.T).T, self.log_s.sum().repeat(x.shape[0])

    def inverse(self, z):
        """z (B, D) -> (x = W^{-1} z (B, D), -log|det W| (B,))."""
        L, U = self.factors()
        y = torch.linalg.solve_triangular(L, self.P_T @ z.T, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(U, y, upper=True)
        return x.T, torch.full_like(z[:, 0], 0) - self.log_s.sum()
''',
        },
    ),
]
