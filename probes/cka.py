"""Linear centred kernel alignment (CKA) between two models' representations of the same inputs.

Kornblith, Norouzi, Lee, Hinton 2019, "Similarity of Neural Network Representations Revisited"
(arXiv 1905.00414), linear kernel:

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F * ||Yc^T Yc||_F)

where ``Xc`` and ``Yc`` are ``X`` and ``Y`` (rows: the same ``n`` examples) with each column's
mean removed. It lies in [0, 1], is 1 for ``X`` against itself, and is invariant to orthogonal
transforms and isotropic scaling of either side (not to arbitrary invertible maps).

All three Gram terms are sums over examples, so :class:`CKAStats` accumulates them batch by
batch: CKA over a whole activation cache needs memory of ``d_x * d_y`` numbers, not ``n * d``.
Sums are kept in float64; with n examples, ``Xc^T Xc = X^T X - n mean_x^T mean_x``.
"""

from collections.abc import Iterable

import torch
from jaxtyping import Float
from torch import Tensor


def linear_cka(x: Float[Tensor, "*layer n d_x"], y: Float[Tensor, "*layer n d_y"]) -> Float[Tensor, "*layer"]:
    """Linear CKA between ``x`` and ``y`` over their ``n`` rows, batched over leading axes.

    Args:
        x: one model's representations, e.g. ``[layer, n, d_model]``.
        y: the other's, over the same rows (widths may differ).

    Returns:
        CKA per leading index (a 0-d tensor for 2-d inputs), float64. ``nan`` where one side is
        constant over the rows (CKA is undefined there).

    Raises:
        ValueError: fewer than two rows, or leading axes / row counts that differ.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(50, 4, generator=g)
        >>> q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
        >>> round(float(linear_cka(x, 3 * x @ q)), 6), round(float(linear_cka(x, x)), 6)
        (1.0, 1.0)
    """
    if x.dim() < 2 or y.dim() < 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"expected x [..., n, d_x] and y [..., n, d_y] with the same leading axes and n, got "
            f"x {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if x.shape[-2] < 2:
        raise ValueError(f"CKA needs at least 2 rows (examples), got {x.shape[-2]}")
    stats = CKAStats()
    stats.update(x, y)
    return stats.value()


class CKAStats:
    """Running sums for linear CKA over batches of paired rows (float64).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(40, 3, generator=g), torch.randn(40, 5, generator=g)
        >>> s = CKAStats()
        >>> s.update(x[:25], y[:25]); s.update(x[25:], y[25:])
        >>> bool(torch.isclose(s.value(), linear_cka(x, y)))
        True
    """

    def __init__(self) -> None:
        self.n = 0
        self._sx: Tensor | None = None
        self._sy: Tensor | None = None
        self._xx: Tensor | None = None
        self._yy: Tensor | None = None
        self._yx: Tensor | None = None

    def update(self, x: Float[Tensor, "*layer n d_x"], y: Float[Tensor, "*layer n d_y"]) -> None:
        """Add a batch of paired rows (``x[..., i, :]`` and ``y[..., i, :]`` are one example)."""
        if x.shape[:-1] != y.shape[:-1]:
            raise ValueError(
                f"paired batches must share leading axes and rows: {tuple(x.shape)} vs {tuple(y.shape)}"
            )
        x, y = x.detach().double(), y.detach().double()
        parts = (x.sum(-2), y.sum(-2), x.mT @ x, y.mT @ y, y.mT @ x)
        if self._sx is None:
            self._sx, self._sy, self._xx, self._yy, self._yx = parts
        else:
            if parts[4].shape != self._yx.shape:
                raise ValueError(
                    f"batch of shape {tuple(x.shape)} / {tuple(y.shape)} does not match the earlier "
                    f"batches (Gram shape {tuple(self._yx.shape)})"
                )
            self._sx, self._sy, self._xx, self._yy, self._yx = (
                a + b for a, b in zip((self._sx, self._sy, self._xx, self._yy, self._yx), parts, strict=True)
            )
        self.n += x.shape[-2]

    def value(self) -> Float[Tensor, "*layer"]:
        """CKA of everything added so far (``nan`` where a side is constant)."""
        if self._sx is None or self.n < 2:
            raise ValueError(f"CKA needs at least 2 rows, got {self.n}")
        mx, my = self._sx / self.n, self._sy / self.n
        xx = self._xx - self.n * mx[..., :, None] * mx[..., None, :]
        yy = self._yy - self.n * my[..., :, None] * my[..., None, :]
        yx = self._yx - self.n * my[..., :, None] * mx[..., None, :]
        num = (yx**2).sum((-2, -1))
        nx, ny = torch.linalg.matrix_norm(xx), torch.linalg.matrix_norm(yy)
        # a constant side leaves only rounding in its centred Gram matrix: CKA is undefined there
        degenerate = (nx <= 1e-10 * torch.linalg.matrix_norm(self._xx)) | (
            ny <= 1e-10 * torch.linalg.matrix_norm(self._yy)
        )
        den = (nx * ny).clamp_min(1e-300)
        return torch.where(degenerate, torch.full_like(num, float("nan")), num / den)


def paired_cka(
    paired, hooks: Iterable[str], labels: tuple[str, str] | None = None, batch_size: int = 4096
) -> dict[str, float]:
    """Linear CKA per hook between two labels of a paired cache, streamed shard by shard.

    Args:
        paired: a :class:`interp.cache.paired.PairedCache` (the same token positions per label).
        hooks: hook names cached by both.
        labels: the two labels compared; default the cache's first two (``base``, ``tuned``).
        batch_size: positions read at a time.

    Returns:
        Hook name -> CKA.

    Raises:
        ValueError: fewer than two labels, or a label that the cache lacks.
    """
    labels = tuple(labels or paired.labels[:2])
    if len(labels) != 2 or any(label not in paired.labels for label in labels):
        raise ValueError(f"labels {labels!r} must be two of the paired cache's labels {paired.labels}")
    out = {}
    for hook in hooks:
        stats = CKAStats()
        for batch in paired.batches(hook, batch_size):
            stats.update(batch[labels[0]].flatten(1), batch[labels[1]].flatten(1))
        out[hook] = float(stats.value())
    return out
