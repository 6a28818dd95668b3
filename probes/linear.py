"""Linear probes per layer, fitted for all layers at once; difference-of-means directions; logit lens.

All layers' probes are one batched logistic regression, fitted by damped Newton steps with
one batched Hessian solve per step for every layer at once (no Python loop of scikit-learn
fits). The objective is scikit-learn's ``LogisticRegression(C=C)`` on standardised features:
mean cross-entropy + ``||W||^2 / (2 C n)``, bias unpenalised.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.atomic import atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of a probe fit.

    Args:
        C: inverse L2 strength, as in scikit-learn.
        test_fraction: share of examples held out for accuracy.
        max_iter: Newton iterations (each ends early once the loss stops changing).
        control: also fit on shuffled labels (the control task) to report selectivity.
        seed: the train/test split and the shuffle.
    """

    C: float = 1.0
    test_fraction: float = 0.2
    max_iter: int = 50
    control: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")


@dataclass(frozen=True)
class ProbeResult:
    """Probes for several sites (layers), with held-out and control-task accuracy."""

    sites: tuple[str, ...]
    W: Float[Tensor, "layer d_model n_class"]
    b: Float[Tensor, "layer n_class"]
    mean: Float[Tensor, "layer d_model"]
    std: Float[Tensor, "layer d_model"]
    train_accuracy: tuple[float, ...]
    test_accuracy: tuple[float, ...]
    control_accuracy: tuple[float, ...] | None
    meta: dict = field(default_factory=dict)

    @property
    def selectivity(self) -> tuple[float, ...] | None:
        """Held-out accuracy minus the control task's (Hewitt & Liang 2019)."""
        if self.control_accuracy is None:
            return None
        return tuple(a - c for a, c in zip(self.test_accuracy, self.control_accuracy, strict=True))

    def predict(self, x: Float[Tensor, "layer n d_model"]) -> Int[Tensor, "layer n"]:
        return _logits(self.W, self.b, (x - self.mean[:, None]) / self.std[:, None]).argmax(-1)

    def __str__(self) -> str:
        sel = self.selectivity
        lines = [f"{'site':<36} {'train':>7} {'test':>7} {'control':>8} {'select.':>8}"]
        for i, site in enumerate(self.sites):
            ctrl = f"{self.control_accuracy[i]:>8.3f}" if sel else f"{'—':>8}"
            s = f"{sel[i]:>8.3f}" if sel else f"{'—':>8}"
            lines.append(
                f"{site:<36} {self.train_accuracy[i]:>7.3f} {self.test_accuracy[i]:>7.3f} {ctrl} {s}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "sites": list(self.sites),
            "train_accuracy": list(self.train_accuracy),
            "test_accuracy": list(self.test_accuracy),
            "control_accuracy": None if self.control_accuracy is None else list(self.control_accuracy),
            "selectivity": None if self.selectivity is None else list(self.selectivity),
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        """``path.safetensors`` (weights and standardisation) plus ``path.json`` (the rest)."""
        from safetensors.torch import save_file

        path = Path(path)
        save_file(
            {"W": self.W.contiguous(), "b": self.b, "mean": self.mean, "std": self.std},
            str(path.with_suffix(".safetensors")),
        )
        atomic_write_json(path.with_suffix(".json"), self.to_dict())

    def plot(self, ax=None):
        """Held-out, control and selectivity per site (matplotlib axes)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(6, 3))[1]
        x = range(len(self.sites))
        ax.plot(x, self.test_accuracy, marker="o", label="held-out")
        if self.control_accuracy is not None:
            ax.plot(x, self.control_accuracy, marker="x", label="control (shuffled)")
            ax.plot(x, self.selectivity, marker=".", label="selectivity")
        ax.set_xticks(list(x), [s.split(".hook")[0] for s in self.sites], rotation=45, ha="right")
        ax.set_ylabel("accuracy")
        ax.legend()
        return ax


def _logits(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("lnd,ldc->lnc", x, W) + b[:, None]


def _fit(
    x: Float[Tensor, "layer n d_model"], y: Int[Tensor, "n"], n_class: int, C: float, max_iter: int,  # noqa: F821
    tol: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Damped Newton steps on every layer at once (batched Hessians, batched solves).

    Class 0's logit is fixed at 0 (``C - 1`` weight vectors, as scikit-learn's binary
    logistic regression; for more classes its symmetric multinomial penalises all ``C``).
    """
    n_layer, n, d = x.shape
    k = n_class - 1
    xb = torch.cat([x, torch.ones(n_layer, n, 1, dtype=x.dtype)], dim=-1)  # bias column
    onehot = torch.nn.functional.one_hot(y, n_class).to(x.dtype)[:, 1:]  # [n, k]
    lam = torch.full((d + 1,), 1.0 / (C * n), dtype=x.dtype)
    lam[-1] = 1e-8  # the bias is not penalised (a tiny ridge keeps the solve well posed)
    reg = lam.repeat(k)  # matches the [d+1, k] -> (d+1)*k flattening below (column-major)
    theta = torch.zeros(n_layer, d + 1, k, dtype=x.dtype)

    zero = torch.zeros(n_layer, n, 1, dtype=x.dtype)
    ridge = torch.diag(reg)

    def objective(t: Tensor) -> tuple[Tensor, Tensor]:
        """Per-layer loss, and the logits of the free classes (reused for the next step)."""
        z = xb @ t  # [layer, n, k]
        lse = torch.logsumexp(torch.cat([zero, z], dim=-1), dim=-1)
        ce = (lse - (z * onehot).sum(-1)).mean(1)
        return ce + 0.5 * (lam[:, None] * t * t).sum((1, 2)), z

    loss, z = objective(theta)
    for iteration in range(max_iter):  # noqa: B007 - kept for the log line below
        p = torch.cat([zero, z], dim=-1).softmax(-1)[..., 1:]  # [layer, n, k]
        grad = xb.transpose(1, 2) @ (p - onehot) / n + lam[:, None] * theta  # [layer, d+1, k]
        blocks = [
            [
                (xb * (p[..., a] * (float(a == b) - p[..., b]))[..., None]).transpose(1, 2) @ xb / n
                for b in range(k)
            ]
            for a in range(k)
        ]
        hess = torch.cat([torch.cat(row, dim=2) for row in blocks], dim=1) + ridge
        g = grad.transpose(1, 2).reshape(n_layer, -1)  # class-major flattening, as the blocks
        # the penalised Hessian is symmetric positive definite: Cholesky is enough
        chol = torch.linalg.cholesky(hess)
        step = torch.cholesky_solve(g[..., None], chol)[..., 0]
        step = step.reshape(n_layer, k, d + 1).transpose(1, 2)
        scale = torch.ones(n_layer, 1, 1, dtype=x.dtype)
        slack = 1e-6 * loss.abs().clamp_min(1.0)  # float rounding is no increase
        for _ in range(12):  # halve the step on the layers whose loss would rise
            new_loss, new_z = objective(theta - scale * step)
            worse = new_loss > loss + slack
            if not worse.any():
                break
            scale[worse] /= 2
        else:  # layers that still cannot decrease have converged to float precision: stay put
            scale[worse] = 0
            new_loss, new_z = objective(theta - scale * step)
        theta = theta - scale * step
        loss, z = new_loss, new_z
        if float((scale * step).abs().max()) < tol:  # Newton steps shrink fast near the optimum
            break
    log.debug("probe fit: %d Newton iterations", iteration + 1)
    W = torch.cat([torch.zeros(n_layer, d, 1, dtype=x.dtype), theta[:, :d]], dim=-1)
    b = torch.cat([torch.zeros(n_layer, 1, dtype=x.dtype), theta[:, d]], dim=-1)
    return W, b


def fit_probes(
    x: Float[Tensor, "layer n d_model"],
    y: Int[Tensor, "n_labels"],  # noqa: F821 - checked against n below, with a message
    sites: Sequence[str] | None = None,
    config: ProbeConfig = ProbeConfig(),
) -> ProbeResult:
    """Fit one linear probe per layer (site) in a single batched optimisation.

    Args:
        x: activations, one slice per site, over the same ``n`` examples.
        y: class labels ``0..n_class-1``.
        sites: names of the sites (e.g. hook names); default ``site0, site1, ...``.
        config: regularisation, split and control task.

    Returns:
        A :class:`ProbeResult` with held-out accuracy and, with ``config.control``, the
        control-task accuracy and selectivity.

    Raises:
        ValueError: mismatched shapes, fewer than two classes, or too few examples.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 2, (400,), generator=g)
        >>> x = torch.randn(2, 400, 8, generator=g); x[1, :, 0] += 3 * y
        >>> r = fit_probes(x, y)
        >>> r.test_accuracy[1] > 0.9 > r.test_accuracy[0]
        True
    """
    if x.dim() != 3 or y.dim() != 1 or x.shape[1] != y.shape[0]:
        raise ValueError(
            f"expected x [layer, n, d_model] and y [n] with the same n, got x {tuple(x.shape)}, "
            f"y {tuple(y.shape)}"
        )
    sites = tuple(sites) if sites is not None else tuple(f"site{i}" for i in range(x.shape[0]))
    if len(sites) != x.shape[0]:
        raise ValueError(f"{len(sites)} site names for {x.shape[0]} sites")
    classes = torch.unique(y)
    if len(classes) < 2 or classes.min() < 0:
        raise ValueError(f"labels must be 0..n_class-1 with at least two classes, got {classes.tolist()}")
    n_class = int(classes.max()) + 1
    n = y.shape[0]
    n_test = int(round(n * config.test_fraction))
    if n_test < 1 or n - n_test < 2:
        raise ValueError(f"{n} examples are too few for a {config.test_fraction} held-out split")
    gen = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(n, generator=gen)
    test, train = perm[:n_test], perm[n_test:]
    x = x.float()
    mean = x[:, train].mean(1)
    std = x[:, train].std(1).clamp_min(1e-6)
    xs = (x - mean[:, None]) / std[:, None]

    def run(labels: Tensor) -> tuple[Tensor, Tensor, list[float], list[float]]:
        W, b = _fit(xs[:, train], labels[train], n_class, config.C, config.max_iter)
        pred = _logits(W, b, xs).argmax(-1)
        acc_tr = (pred[:, train] == labels[train]).float().mean(1).tolist()
        acc_te = (pred[:, test] == labels[test]).float().mean(1).tolist()
        return W, b, acc_tr, acc_te

    W, b, acc_tr, acc_te = run(y)
    control = None
    if config.control:
        shuffled = y[torch.randperm(n, generator=gen)]
        control = tuple(run(shuffled)[3])
    return ProbeResult(
        sites, W, b, mean, std, tuple(acc_tr), tuple(acc_te), control,
        {"n_train": len(train), "n_test": n_test, "n_class": n_class, "C": config.C},
    )


def fit_probes_from_cache(
    cache, y: Int[Tensor, "n"], hooks: Sequence[str] | None = None,  # noqa: F821
    index: Int[Tensor, "n"] | None = None, config: ProbeConfig = ProbeConfig(),  # noqa: F821
) -> ProbeResult:
    """Probes on a cache's hooks, for the cached positions ``index`` (default: all) labelled ``y``."""
    hooks = list(hooks or cache.hooks)
    idx = index if index is not None else torch.arange(cache.n_positions)
    if len(idx) != len(y):
        raise ValueError(f"{len(y)} labels for {len(idx)} positions")
    x = torch.stack([cache[h][idx].float() for h in hooks])
    result = fit_probes(x, y, hooks, config)
    return ProbeResult(**{**result.__dict__, "meta": {**result.meta, "cache_id": cache.id}})


def diff_of_means(
    positive: Float[Tensor, "n d_model"], negative: Float[Tensor, "m d_model"]
) -> Float[Tensor, "d_model"]:  # noqa: F821
    """Mean of ``positive`` minus mean of ``negative`` (the CAA / mass-mean direction)."""
    if positive.shape[-1] != negative.shape[-1] or not len(positive) or not len(negative):
        raise ValueError(
            f"need non-empty sets of equal width, got {tuple(positive.shape)} and {tuple(negative.shape)}"
        )
    return positive.float().mean(0) - negative.float().mean(0)


def logit_lens(
    model, tokens: Int[Tensor, "batch pos"], layers: Sequence[int] | None = None
) -> Float[Tensor, "layer batch pos d_vocab"]:
    """Decode each layer's residual stream through the final norm and unembedding."""
    from interp.hooks import record

    module = getattr(model, "module", model)
    layers = list(range(module.cfg.n_layers)) if layers is None else list(layers)
    names = [f"blocks.{i}.hook_resid_post" for i in layers]
    with torch.inference_mode(), record(model, names) as acts:
        module(tokens)
    with torch.inference_mode():
        return torch.stack([module.unembed(module.ln_final(acts[n])) for n in names])


