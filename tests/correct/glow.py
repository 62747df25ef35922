"""Correct submissions of assignment 06 (Glow's building blocks) in other styles (see
tests/correct/__init__.py)."""

from correct import Rewrite

ACTNORM_HEAD = '''class ActNorm(nn.Module):
    """z = (x - loc) * exp(-log_scale), per channel, on images (B, C, H, W)."""

    def __init__(self, channels):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
'''

INVCONV_HEAD = '''class InvConv1x1(nn.Module):
    """z[:, :, i, j] = W x[:, :, i, j] at every pixel, with W = P L U."""

    def __init__(self, channels, *, seed=0):
        super().__init__()
        w0 = random_orthogonal(channels, generator=torch.Generator().manual_seed(seed))
        P, L, U = torch.linalg.lu(w0.to(torch.get_default_dtype()))
        self.register_buffer("P", P)
        self.lower = nn.Parameter(torch.tril(L, diagonal=-1))
        self.upper = nn.Parameter(torch.triu(U, diagonal=1))
        self.s = nn.Parameter(torch.diagonal(U).clone())
'''

CORRECT: list[Rewrite] = [
    Rewrite(
        name="pixel_shuffle_and_var_mean",
        description="F.pixel_unshuffle for squeeze, torch.var_mean with Bessel's correction",
        cells={
            "06_actnorm": ACTNORM_HEAD
            + '''
    def initialize(self, x):
        """Set loc and log_scale from the per-channel mean and std of the batch x (B, C, H, W)."""
        with torch.no_grad():
            variance, mean = torch.var_mean(x, dim=(0, 2, 3))  # unbiased
            self.loc.copy_(mean)
            self.log_scale.copy_(0.5 * torch.log(variance) + 1e-6)
            self.initialized.copy_(torch.tensor(True))

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, C, H, W), log_det (B,)); initializes on the first call."""
        if not self.initialized.item():
            self.initialize(x)
        z = (x - self.loc.view(1, -1, 1, 1)) / torch.exp(self.log_scale.view(1, -1, 1, 1))
        height, width = x.shape[-2:]
        return z, -height * width * self.log_scale.sum() * torch.ones(x.shape[0])

    def inverse(self, z):
        """z (B, C, H, W) -> (x (B, C, H, W), log_det (B,))."""
        x = z * torch.exp(self.log_scale.view(1, -1, 1, 1)) + self.loc.view(1, -1, 1, 1)
        height, width = z.shape[-2:]
        return x, height * width * self.log_scale.sum() * torch.ones(z.shape[0])
''',
            "06_squeeze": '''import torch.nn.functional as F


class Squeeze(nn.Module):
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2), a permutation with log-det 0."""

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, 4C, H/2, W/2), log_det (B,))."""
        return F.pixel_unshuffle(x, 2), torch.zeros(x.shape[0], dtype=x.dtype)

    def inverse(self, z):
        """z (B, 4C, H/2, W/2) -> (x (B, C, H, W), log_det (B,))."""
        return F.pixel_shuffle(z, 2), torch.zeros(z.shape[0], dtype=z.dtype)
''',
        },
    ),
    Rewrite(
        name="conv2d_and_solve",
        description="F.conv2d with a (C, C, 1, 1) kernel, torch.linalg.solve on the pixels",
        cells={
            "06_invconv": INVCONV_HEAD
            + '''
    def weight(self):
        """W = P L U, (C, C)."""
        L = self.lower.tril(-1) + torch.diag_embed(torch.ones_like(self.s))
        U = self.upper.triu(1) + torch.diag_embed(self.s)
        return torch.linalg.multi_dot([self.P, L, U])

    def log_abs_det_weight(self):
        """log|det W|, a 0-dimensional tensor, in O(C)."""
        return self.s.abs().log().sum()

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, C, H, W), log_det (B,))."""
        channels = x.shape[1]
        z = torch.nn.functional.conv2d(x, self.weight().view(channels, channels, 1, 1))
        log_det = x[0, 0].numel() * self.log_abs_det_weight()
        return z, log_det.repeat(x.shape[0])

    def inverse(self, z):
        """z (B, C, H, W) -> (x (B, C, H, W), log_det (B,))."""
        batch, channels, height, width = z.shape
        columns = z.transpose(0, 1).reshape(channels, -1)  # one column per pixel
        x = torch.linalg.solve(self.weight(), columns)
        x = x.reshape(channels, batch, height, width).transpose(0, 1)
        return x, (-height * width * self.log_abs_det_weight()).repeat(batch)
''',
        },
    ),
    Rewrite(
        name="triangular_solves_channels_last",
        description="channels-last matmul, inverse by two triangular solves with the factors",
        cells={
            "06_invconv": INVCONV_HEAD
            + '''
    def factors(self):
        eye = torch.eye(len(self.s), dtype=self.s.dtype, device=self.s.device)
        L = torch.tril(self.lower, diagonal=-1) + eye
        U = torch.triu(self.upper, diagonal=1) + torch.diag(self.s)
        return L, U

    def weight(self):
        """W = P L U, (C, C)."""
        L, U = self.factors()
        return self.P @ (L @ U)

    def log_abs_det_weight(self):
        """log|det W|, a 0-dimensional tensor, in O(C)."""
        return torch.sum(torch.log(torch.abs(self.s)))

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, C, H, W), log_det (B,))."""
        channels_last = x.permute(0, 2, 3, 1)  # (B, H, W, C): rows are channel vectors
        z = (channels_last @ self.weight().T).permute(0, 3, 1, 2)
        log_det = x.shape[2] * x.shape[3] * self.log_abs_det_weight()
        return z, log_det * x.new_ones(x.shape[0])

    def inverse(self, z):
        """z (B, C, H, W) -> (x (B, C, H, W), log_det (B,))."""
        L, U = self.factors()
        columns = z.permute(1, 0, 2, 3).reshape(z.shape[1], -1)
        y = torch.linalg.solve_triangular(L, self.P.T @ columns, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(U, y, upper=True)
        x = x.reshape(z.shape[1], z.shape[0], z.shape[2], z.shape[3]).permute(1, 0, 2, 3)
        log_det = -z.shape[2] * z.shape[3] * self.log_abs_det_weight()
        return x, log_det * z.new_ones(z.shape[0])
''',
        },
    ),
    Rewrite(
        name="data_attribute_and_reshape",
        description="initialization through .data, a reassigned buffer, reshape/permute squeeze",
        cells={
            "06_actnorm": ACTNORM_HEAD
            + '''
    def initialize(self, x):
        """Set loc and log_scale from the per-channel mean and std of the batch x (B, C, H, W)."""
        mean = x.mean(dim=(0, 2, 3))
        std = ((x - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3)).sqrt()
        self.loc.data.copy_(mean.detach())
        self.log_scale.data.copy_(torch.log(std.detach() + 1e-6))
        self.initialized = torch.tensor(True)
        print("ActNorm initialized: loc", mean.tolist())

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, C, H, W), log_det (B,)); initializes on the first call."""
        if not bool(self.initialized):
            self.initialize(x)
        scale = torch.exp(-self.log_scale)[None, :, None, None]
        z = (x - self.loc[None, :, None, None]) * scale
        per_sample = -(x.shape[2] * x.shape[3]) * torch.sum(self.log_scale)
        return z, per_sample.expand(len(x))

    def inverse(self, z):
        """z (B, C, H, W) -> (x (B, C, H, W), log_det (B,))."""
        x = z * torch.exp(self.log_scale)[None, :, None, None] + self.loc[None, :, None, None]
        per_sample = (z.shape[2] * z.shape[3]) * torch.sum(self.log_scale)
        return x, per_sample.expand(len(z))
''',
            "06_squeeze": '''class Squeeze(nn.Module):
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2), a permutation with log-det 0."""

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, 4C, H/2, W/2), log_det (B,))."""
        b, c, h, w = x.shape
        blocks = x.reshape(b, c, h // 2, 2, w // 2, 2)  # (b, c, i, a, j, b')
        z = blocks.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return z, torch.zeros(b, dtype=x.dtype, device=x.device)

    def inverse(self, z):
        """z (B, 4C, H/2, W/2) -> (x (B, C, H, W), log_det (B,))."""
        b, c4, h, w = z.shape
        blocks = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return blocks.reshape(b, c4 // 4, 2 * h, 2 * w), torch.zeros(b, dtype=z.dtype)
''',
        },
    ),
    Rewrite(
        name="helpers_and_float32_minded",
        description="small helper methods, dtype-explicit code, a loop over the four offsets",
        cells={
            "06_actnorm": ACTNORM_HEAD
            + '''
    @staticmethod
    def channel_statistics(x):
        values = x.detach().permute(1, 0, 2, 3).flatten(start_dim=1)  # (C, B·H·W)
        return values.mean(dim=1), values.std(dim=1)

    def shaped(self, parameter):
        return parameter.reshape(1, -1, 1, 1)

    def initialize(self, x):
        """Set loc and log_scale from the per-channel mean and std of the batch x (B, C, H, W)."""
        mean, std = self.channel_statistics(x)
        with torch.no_grad():
            self.loc.copy_(mean.to(self.loc.dtype))
            self.log_scale.copy_((std + 1e-6).log().to(self.log_scale.dtype))
            self.initialized.fill_(True)

    def log_det(self, image, sign):
        pixels = image.shape[-1] * image.shape[-2]
        value = sign * pixels * self.log_scale.sum()
        return value * torch.ones(image.shape[0], dtype=image.dtype)

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, C, H, W), log_det (B,)); initializes on the first call."""
        if not self.initialized:
            self.initialize(x)
        z = (x - self.shaped(self.loc)) * torch.exp(-self.shaped(self.log_scale))
        return z, self.log_det(x, -1.0)

    def inverse(self, z):
        """z (B, C, H, W) -> (x (B, C, H, W), log_det (B,))."""
        x = z * torch.exp(self.shaped(self.log_scale)) + self.shaped(self.loc)
        return x, self.log_det(z, 1.0)
''',
            "06_invconv": INVCONV_HEAD
            + '''
    def weight(self):
        """W = P L U, (C, C)."""
        channels = self.s.shape[0]
        mask = torch.ones(channels, channels, dtype=torch.bool).tril(-1)
        L = torch.where(mask, self.lower, torch.zeros_like(self.lower))
        L = L + torch.eye(channels, dtype=self.lower.dtype)
        U = torch.where(mask.T, self.upper, torch.zeros_like(self.upper)) + torch.diag(self.s)
        return self.P.to(L.dtype) @ L @ U

    def log_abs_det_weight(self):
        """log|det W|, a 0-dimensional tensor, in O(C)."""
        return torch.log(self.s.abs().prod())

    def apply(self, matrix, images):
        return torch.einsum("oc,bchw->bohw", matrix.to(images.dtype), images)

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, C, H, W), log_det (B,))."""
        log_det = (x.shape[2] * x.shape[3]) * self.log_abs_det_weight()
        return self.apply(self.weight(), x), log_det.expand(x.shape[0]).to(x.dtype)

    def inverse(self, z):
        """z (B, C, H, W) -> (x (B, C, H, W), log_det (B,))."""
        log_det = -(z.shape[2] * z.shape[3]) * self.log_abs_det_weight()
        return self.apply(torch.inverse(self.weight()), z), log_det.expand(z.shape[0])
''',
            "06_squeeze": '''OFFSETS = ((0, 0), (1, 1), (0, 1), (1, 0))  # any fixed order will do


class Squeeze(nn.Module):
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2), a permutation with log-det 0."""

    def forward(self, x):
        """x (B, C, H, W) -> (z (B, 4C, H/2, W/2), log_det (B,))."""
        parts = [x[:, :, a::2, b::2] for a, b in OFFSETS]
        return torch.cat(parts, dim=1), torch.zeros(x.shape[0], dtype=x.dtype)

    def inverse(self, z):
        """z (B, 4C, H/2, W/2) -> (x (B, C, H, W), log_det (B,))."""
        batch, channels, height, width = z.shape
        x = z.new_zeros(batch, channels // 4, 2 * height, 2 * width)
        for part, (a, b) in zip(z.chunk(4, dim=1), OFFSETS, strict=True):
            x[:, :, a::2, b::2] = part  # x is new: writing into it is safe for autograd
        return x, torch.zeros(batch, dtype=z.dtype)
''',
        },
    ),
]
