"""Reading a trained crosscoder: which latents belong to one model, and which only seem to.

:func:`classify_latents`: each latent's decoder-norm ratio
``r = ||d_tuned|| / (||d_base|| + ||d_tuned||)`` labels it base-only (``r < 0.1``), shared
(``0.3 <= r <= 0.7``), tuned-only (``r > 0.9``) or other; latents that never fired in the last
part of training (from ``threshold_start`` on) are dead. Latent scaling (:func:`latent_scaling`,
Minder et al. 2025, arXiv 2504.02922) then checks each model-specific latent ``j`` with direction
``d`` (its decoder in the model it lives in): the least-squares ``beta`` (:func:`fit_beta`) such
that ``beta * f_j * d`` best explains, in each model, the crosscoder's error with ``j``'s own
contribution put back (``beta_error``), and the crosscoder's reconstruction
(``beta_reconstruction``, decoder bias left out: a constant offset explains nothing). The ratios
``nu = beta(other model) / beta(own model)`` are near 0 for a latent that really is specific; a
large ``nu_error`` says the other model still carries the direction, unexplained (Complete
Shrinkage), a large ``nu_reconstruction`` that other latents reconstruct it there (Latent
Decoupling): such a latent is flagged.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import PairedCache
from interp.errors import CrosscoderError
from interp.results import format_table
from steering.crosscoder_data import aligned_batches
from steering.crosscoder_model import Crosscoder

KINDS = ("base-only", "shared", "tuned-only", "other", "dead")
BOUNDS = {"base-only": 0.1, "shared": (0.3, 0.7), "tuned-only": 0.9}  # on r, as in Minder et al.


def fit_beta(
    f: Float[Tensor, "batch"],  # noqa: F821
    direction: Float[Tensor, "d_model"],  # noqa: F821
    target: Float[Tensor, "batch d_model"],
) -> float:
    """The least-squares ``beta`` minimising ``sum_i ||beta * f_i * direction - target_i||^2``.

    Example:
        >>> fit_beta(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]),
        ...          torch.tensor([[2.0, 5.0], [3.0, 1.0]]))
        1.6
    """
    den = float((f.double() ** 2).sum() * (direction.double() ** 2).sum())
    num = float((f.double() * (target.double() @ direction.double())).sum())
    return num / den if den > 0 else float("nan")


@dataclass(frozen=True)
class LatentKinds:
    """Each latent's decoder-norm ratio between two of the crosscoder's models, and its kind.

    ``ratio`` is ``||d_tuned|| / (||d_base|| + ||d_tuned||)``; ``cosine`` the cosine between the
    two decoder vectors (nan where one is zero); ``kinds`` one of :data:`KINDS` per latent.
    """

    labels: tuple[str, str]
    ratio: Float[Tensor, "d_sae"] = field(repr=False)  # noqa: F821
    cosine: Float[Tensor, "d_sae"] = field(repr=False)  # noqa: F821
    kinds: tuple[str, ...] = field(repr=False)

    def indices(self, kind: str) -> list[int]:
        if kind not in KINDS:
            raise CrosscoderError(f"kind {kind!r} is not one of {list(KINDS)}")
        return [i for i, k in enumerate(self.kinds) if k == kind]

    def counts(self) -> dict[str, int]:
        return {k: len(self.indices(k)) for k in KINDS}

    def shared_cosine(self) -> float:
        """Mean decoder cosine over the shared latents (nan if none)."""
        idx = self.indices("shared")
        return float(self.cosine[idx].mean()) if idx else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "counts": self.counts(),
            "shared_mean_cosine": self.shared_cosine(),
            "ratio": self.ratio.tolist(),
            "cosine": [None if math.isnan(c) else c for c in self.cosine.tolist()],
            "kinds": list(self.kinds),
        }

    def __str__(self) -> str:
        base, tuned = self.labels
        head = f"crosscoder latents by decoder-norm ratio ||d_{tuned}|| / (||d_{base}|| + ||d_{tuned}||)"
        rows = [[k, n] for k, n in self.counts().items()] + [["shared: mean cosine", self.shared_cosine()]]
        return head + "\n" + format_table(["kind", "latents"], rows)


def classify_latents(cc: Crosscoder, base: str | None = None, tuned: str | None = None) -> LatentKinds:
    """Decoder-norm ratio, kind and decoder cosine of every latent (see the module docstring).

    Args:
        cc: a trained crosscoder.
        base, tuned: the two models compared (default: its first and second).

    Example:
        >>> cc = Crosscoder(2, 3, 2, k=1)
        >>> _ = cc.W_dec.data.copy_(torch.tensor([[[1., 0, 0], [0, 0, 0]], [[1., 0, 0], [0, 1, 0]]]))
        >>> _ = cc.fire_count.fill_(1)
        >>> classify_latents(cc).kinds
        ('shared', 'tuned-only')
    """
    b, t = cc.index(base or cc.labels[0]), cc.index(tuned or cc.labels[1])
    with torch.no_grad():
        d_base, d_tuned = cc.W_dec[b].float(), cc.W_dec[t].float()
        nb, nt = d_base.norm(dim=-1), d_tuned.norm(dim=-1)
        ratio = nt / (nb + nt).clamp(min=1e-30)
        cosine = torch.where(
            (nb > 0) & (nt > 0), (d_base * d_tuned).sum(-1) / (nb * nt).clamp(min=1e-30), torch.nan
        )
    lo, hi = BOUNDS["shared"]
    kinds = []
    for r, dead in zip(ratio.tolist(), ((cc.fire_count == 0) | (nb + nt == 0)).tolist(), strict=True):
        if dead:
            kinds.append("dead")
        elif r < BOUNDS["base-only"]:
            kinds.append("base-only")
        elif r > BOUNDS["tuned-only"]:
            kinds.append("tuned-only")
        elif lo <= r <= hi:
            kinds.append("shared")
        else:
            kinds.append("other")
    return LatentKinds((cc.labels[b], cc.labels[t]), ratio, cosine, tuple(kinds))


@dataclass(frozen=True)
class LatentScaling:
    """Latent scaling of model-specific latents (see the module docstring).

    ``beta[name]`` per latent for ``error_own``, ``error_other``, ``reconstruction_own`` and
    ``reconstruction_other``; ``own[i]`` is the model latent ``latents[i]`` lives in.
    """

    latents: tuple[int, ...]
    own: tuple[str, ...]
    other: tuple[str, ...]
    beta: dict[str, Tensor] = field(repr=False)
    n_active: Tensor = field(repr=False)
    max_ratio: float = 0.5

    @property
    def nu_error(self) -> Tensor:
        return self.beta["error_other"] / self.beta["error_own"]

    @property
    def nu_reconstruction(self) -> Tensor:
        return self.beta["reconstruction_other"] / self.beta["reconstruction_own"]

    def flagged(self) -> list[int]:
        """Latents whose model-specific label may be a shrinkage artefact (either ratio > ``max_ratio``)."""
        bad = (self.nu_error > self.max_ratio) | (self.nu_reconstruction > self.max_ratio)
        return [j for j, b in zip(self.latents, bad.tolist(), strict=True) if b]

    def to_dict(self) -> dict[str, Any]:
        def clean(t: Tensor) -> list:
            return [None if math.isnan(v) else v for v in t.tolist()]

        return {
            "latents": list(self.latents),
            "own": list(self.own),
            "other": list(self.other),
            "beta": {k: clean(v) for k, v in self.beta.items()},
            "n_active": self.n_active.tolist(),
            "nu_error": clean(self.nu_error),
            "nu_reconstruction": clean(self.nu_reconstruction),
            "max_ratio": self.max_ratio,
            "flagged": self.flagged(),
        }

    def __str__(self) -> str:
        rows = [
            [j, own, int(n), e, r, "yes" if j in self.flagged() else ""]
            for j, own, n, e, r in zip(
                self.latents,
                self.own,
                self.n_active.tolist(),
                self.nu_error.tolist(),
                self.nu_reconstruction.tolist(),
                strict=True,
            )
        ]
        return format_table(["latent", "in", "active", "nu_error", "nu_recon", "flagged"], rows)


def latent_scaling(
    cc: Crosscoder,
    source: "PairedCache | Mapping[str, Tensor]",
    latents: Sequence[int] | None = None,
    base: str | None = None,
    tuned: str | None = None,
    batch_size: int = 4096,
    max_ratio: float = 0.5,
) -> LatentScaling:
    """Fit each latent's ``beta`` ratios over the source's activations (streamed, exact sums).

    Args:
        cc: a trained crosscoder.
        source: the data (a paired cache at ``cc.hook``, or ``{label: [positions, d_model]}``).
        latents: which (default: the base-only and tuned-only ones of :func:`classify_latents`).
        base, tuned: the two models compared (default: the crosscoder's first two).
        batch_size: positions per batch (inference uses the threshold, so this changes nothing).
        max_ratio: ``nu`` above which a latent is flagged.

    Raises:
        CrosscoderError: the data does not fit the crosscoder (see :meth:`Crosscoder.check_fits`).
    """
    kinds = classify_latents(cc, base, tuned)
    idx_b, idx_t = cc.index(kinds.labels[0]), cc.index(kinds.labels[1])
    if latents is None:
        latents = kinds.indices("base-only") + kinds.indices("tuned-only")
    cc.check_fits(source, cc.hook)
    lat = torch.as_tensor(list(latents), dtype=torch.long)
    own = torch.where(kinds.ratio[lat] >= 0.5, idx_t, idx_b)
    other = torch.where(own == idx_t, idx_b, idx_t)
    keep = None
    if isinstance(source, PairedCache) and cc.config is not None and cc.config.exclusion().excludes_anything:
        keep = cc.config.exclusion().keep_mask(source[cc.labels[0]])
    num = {k: torch.zeros(len(lat), dtype=torch.float64) for k in ("error", "reconstruction")}
    num = {f"{k}_{side}": v.clone() for k, v in num.items() for side in ("own", "other")}
    den = torch.zeros(len(lat), dtype=torch.float64)
    active = torch.zeros(len(lat), dtype=torch.long)
    with torch.no_grad():
        d = cc.W_dec[own, lat].double()  # [S, d_model]: each latent's direction in its own model
        for x in aligned_batches(
            source, cc.hook, cc.labels, batch_size, 0, keep, shuffle=False, drop_last=False
        ):
            f = cc.encode(x)
            recon = cc.decode(f)
            fs = f[:, lat].double()
            den += (fs**2).sum(0) * (d**2).sum(-1)
            active += (fs > 0).sum(0)
            for side, models in (("own", own), ("other", other)):
                for m in models.unique().tolist():
                    sel = models == m
                    self_dot = (cc.W_dec[m, lat[sel]].double() * d[sel]).sum(-1)  # j's own share in m
                    err = (x[:, m] - recon[:, m]).double() @ d[sel].T
                    rec = (recon[:, m] - cc.b_dec[m]).double() @ d[sel].T
                    f_sq = (fs[:, sel] ** 2).sum(0)
                    num[f"error_{side}"][sel] += (fs[:, sel] * err).sum(0) + f_sq * self_dot
                    num[f"reconstruction_{side}"][sel] += (fs[:, sel] * rec).sum(0)
    beta = {k: torch.where(den > 0, v / den.clamp(min=1e-300), torch.nan).float() for k, v in num.items()}
    return LatentScaling(
        tuple(lat.tolist()),
        tuple(cc.labels[i] for i in own.tolist()),
        tuple(cc.labels[i] for i in other.tolist()),
        beta,
        active,
        max_ratio,
    )
