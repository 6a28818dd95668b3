"""The quality of a sparse autoencoder on cached activations.

:func:`evaluate_sae` measures explained variance ``1 - sum ||x - x_hat||^2 / sum ||x - mean||^2``
(sae-lens's ``metrics/explained_variance``), L0 (mean number of active features per token), dead
features (never active over the evaluated tokens), and the next-token cross-entropy of the model
with the SAE's reconstruction spliced in at the hook, against the clean model and zero ablation.

Every number is over real-token positions only: the positions the SAE was trained without
(its recorded :class:`~steering.sae_io.SinkExclusion`; position 0 and BOS tokens by default) are
left out of the reconstruction metrics, keep their clean activations in the spliced and ablated
runs, and the next-token predictions made there are left out of the CE (sae-lens's evals treat
their ignored tokens the same way). The report says which positions it covers.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.cache import Cache
from interp.errors import SAEError
from interp.results import format_table, save_json
from steering.sae_io import SinkExclusion, _as_cache, _flat, check_sae_fits, kept_batches


@dataclass(frozen=True)
class SAEEval:
    """Reconstruction quality of an SAE over ``n_tokens`` cached activations (see module doc)."""

    n_tokens: int
    explained_variance: float
    mse: float
    l0: float
    dead_features: int
    d_sae: int
    ce_clean: float | None = None
    ce_spliced: float | None = None
    ce_zero_ablated: float | None = None
    ce_tokens: int = 0
    positions: str = "all positions"

    @property
    def ce_increase(self) -> float | None:
        """CE with the SAE spliced in minus clean CE (nats per token)."""
        return None if self.ce_clean is None else self.ce_spliced - self.ce_clean

    @property
    def loss_recovered(self) -> float | None:
        """``(CE_zero - CE_spliced) / (CE_zero - CE_clean)``: 1 is perfect, 0 no better than zeros."""
        if self.ce_clean is None or self.ce_zero_ablated == self.ce_clean:
            return None
        return (self.ce_zero_ablated - self.ce_spliced) / (self.ce_zero_ablated - self.ce_clean)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ce_increase=self.ce_increase, loss_recovered=self.loss_recovered)
        return d

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        rows = [[k, v] for k, v in self.to_dict().items() if k != "positions"]
        return format_table(["metric", "value"], [["positions", self.positions], *rows], digits=4)


def evaluate_sae(
    sae,
    cache: "Cache | str | Path",
    hook: str,
    model=None,
    n_tokens: int = 8192,
    batch_size: int = 1024,
    ce_batch_rows: int = 16,
    exclude: SinkExclusion | None = None,
) -> SAEEval:
    """Explained variance, L0, dead features, and (given the model) CE with the SAE spliced in.

    Args:
        sae: an ``sae_lens.SAE``.
        cache: the cache to evaluate on (pass a held-out cache for out-of-sample numbers).
        hook: the hook the SAE reads.
        model: the model the cache was built from; if None, the CE numbers are left out.
        n_tokens: how many cached positions (in cache order) and, for CE, about how many tokens
            of the cache's rows to use.
        batch_size: positions per SAE batch.
        ce_batch_rows: token rows per forward pass for CE.
        exclude: the positions to leave out; default: what the SAE was trained without (its
            metadata), else position 0 and BOS tokens. ``SinkExclusion((), bos=False)`` measures
            every position.

    Returns:
        An :class:`SAEEval`, whose ``positions`` says which positions its numbers cover.

    Raises:
        SAEError: the SAE's ``d_in`` differs from the cache's activations.
        ModelMismatchError: ``model`` is not the cache's model.
    """
    cache = _as_cache(cache)
    check_sae_fits(sae, cache, hook)
    exclude = SinkExclusion.of_sae(sae) if exclude is None else exclude
    keep = exclude.keep_mask(cache) if exclude.excludes_anything else None
    if keep is not None and not keep.any():
        raise SAEError(
            f"every cached position at {hook!r} in {str(cache.root)!r} is excluded "
            f"({exclude.describe(SinkExclusion.bos_token_id(cache))}); evaluate on longer rows, "
            "or pass exclude=SinkExclusion((), bos=False)"
        )
    sq_err, sum_sq, l0_sum = (torch.zeros((), dtype=torch.float64) for _ in range(3))
    sum_x = torch.zeros(int(sae.cfg.d_in), dtype=torch.float64)
    fired = torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool)
    seen = 0
    with torch.no_grad():
        for batch in kept_batches(cache, hook, batch_size, keep):
            x = _flat(batch[: n_tokens - seen]).to(sae.device)
            feats = sae.encode(x)
            x_hat = sae.decode(feats)
            sq_err = sq_err + (x_hat - x).double().pow(2).sum().cpu()
            sum_x = sum_x + x.double().sum(0).cpu()
            sum_sq = sum_sq + x.double().pow(2).sum().cpu()
            active = (feats != 0).cpu()
            l0_sum = l0_sum + active.sum()
            fired |= active.any(0)
            seen += len(x)
            if seen >= n_tokens:
                break
    total_var = sum_sq - sum_x.pow(2).sum() / seen
    ce = _spliced_ce(sae, cache, hook, model, n_tokens, ce_batch_rows, exclude) if model is not None else {}
    return SAEEval(
        n_tokens=seen,
        explained_variance=float(1 - sq_err / total_var),
        mse=float(sq_err / seen),
        l0=float(l0_sum / seen),
        dead_features=int((~fired).sum()),
        d_sae=int(sae.cfg.d_sae),
        positions=exclude.describe(SinkExclusion.bos_token_id(cache)),
        **ce,
    )


def _rows_up_to(cache: Cache, n_tokens: int) -> list[list[int]]:
    rows, total = [], 0
    for row in cache.iter_row_tokens():
        if len(row) < 2:
            continue
        rows.append(row)
        total += len(row) - 1
        if total >= n_tokens:
            break
    return rows


def _spliced_ce(
    sae, cache: Cache, hook: str, model, n_tokens: int, batch_rows: int, exclude: SinkExclusion
) -> dict[str, Any]:
    from interp.cache.capture import pad_rows
    from interp.hooks import patch
    from interp.models import as_model

    model = as_model(model)
    cache.check_model(model)
    rows = _rows_up_to(cache, n_tokens)
    if not rows:
        raise SAEError(f"cache {str(cache.root)!r} has no rows of two or more tokens to measure CE on")

    bos = SinkExclusion.bos_token_id(cache) if exclude.bos else None
    where: Tensor | None = None  # [batch, pos] positions the SAE reads in the current forward pass

    def only_kept(act: Tensor, new: Tensor) -> Tensor:
        keep = where.to(act.device).reshape(*where.shape, *([1] * (act.dim() - 2)))
        return torch.where(keep, new, act)

    def splice(act: Tensor) -> Tensor:
        out = sae.decode(sae.encode(act.reshape(*act.shape[:2], -1).to(sae.device, torch.float32)))
        return only_kept(act, out.reshape(act.shape).to(act.dtype))

    def zero(act: Tensor) -> Tensor:
        return only_kept(act, torch.zeros_like(act))

    totals = dict.fromkeys(("ce_clean", "ce_spliced", "ce_zero_ablated"), 0.0)
    count = 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_rows):
            chunk = rows[i : i + batch_rows]
            # Right padding never changes the real positions under causal attention.
            tokens, mask = pad_rows(chunk, [range(len(r)) for r in chunk], 0)
            where = mask & _kept(tokens, exclude.positions, bos)
            tokens = tokens.to(model.device)
            # the prediction made at position p is scored when the SAE read position p
            targets, valid = tokens[:, 1:], (where[:, :-1] & mask[:, 1:]).to(model.device)
            totals["ce_clean"] += _ce_sum(model(tokens), targets, valid)
            with patch(model, {hook: splice}):
                totals["ce_spliced"] += _ce_sum(model(tokens), targets, valid)
            with patch(model, {hook: zero}):
                totals["ce_zero_ablated"] += _ce_sum(model(tokens), targets, valid)
            count += int(valid.sum())
    if not count:
        raise SAEError(
            f"cache {str(cache.root)!r} has no next-token prediction made at a position the SAE "
            f"reads ({exclude.describe(bos)}) to measure CE on; pass model=None or longer rows"
        )
    return {**{k: v / count for k, v in totals.items()}, "ce_tokens": count}


def _kept(tokens: Tensor, positions: tuple[int, ...], bos: int | None) -> Tensor:
    """``[batch, pos]``: True where the SAE reads (not an excluded position, not BOS)."""
    keep = ~torch.isin(torch.arange(tokens.shape[1]), torch.tensor(positions, dtype=torch.long))
    keep = keep[None].expand(tokens.shape).clone()
    if bos is not None:
        keep &= tokens != bos
    return keep


def _ce_sum(logits: Tensor, targets: Tensor, valid: Tensor) -> float:
    logp = logits[:, :-1].float().log_softmax(-1)
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1)
    return float(nll[valid].sum())
