"""Matched-contrast vectors, norm rescaling, patching-based layer ranking and the layer sweep.

The recipe of Venhoff et al. 2025 (arXiv 2506.18167), in four parts:

- :func:`contrast_vector`: difference of means between two position sets of the same token rows
  (e.g. :func:`interp.organism.contrasts.check_vs_commit`: moves followed by ``WAIT`` vs by
  ``;``), recorded over the full rows at every hook;
- :func:`rescale_to_layer_norm`: each direction set to the mean activation norm of its hook, so
  that a scale means "so many times the layer's own norm" at every layer;
- :func:`steering.patching.attribution_patching`: the first-order estimate of each hook's
  patching effect from one forward and one backward pass, a cheap ranking of layers;
  :func:`steering.patching.activation_patching` gives the exact effects it approximates;
- :func:`layer_sweep`: every hook of the vector alone at every scale, its effect on a metric and
  its KL cost on neutral text (:func:`steering.sweep.kl_cost`); picks the hook and scale of best
  effect per unit of KL among those that raise the metric::

    vec = contrast_vector(model, rows, c.positive, c.negative, hook_grid(model))
    result = layer_sweep(model, vec, log_scales(0.25, 8, 6), effect, neutral_rows)
    print(result); result.save("layers.json"); result.plot("layers.png")
"""

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import HookNameError, InterpError
from interp.hooks import record, resolve_hook_names
from interp.results import format_table, save_figure, save_json
from interp.selectors import Selector
from steering.steering_vector import SteeringVector, model_meta

HOOK_KINDS = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
LogitMetric = Callable[[Tensor], Tensor]  # logits [batch, pos, d_vocab] -> a scalar tensor


class LayerChoiceError(InterpError, ValueError):
    """Rows, positions, scales or metrics that a contrast, a rescaling or a sweep cannot use."""


def hook_grid(model, layers: Sequence[int] | None = None, kinds: Sequence[str] = HOOK_KINDS) -> list[str]:
    """The hooks of ``kinds`` at each of ``layers`` (default: all), checked against the model.

    Raises:
        HookNameError: a layer or kind the model lacks.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=4, n_ctx=4, d_head=2, d_vocab=5, act_fn="relu")
        >>> hook_grid(HookedTransformer(cfg), [1], ["hook_resid_post", "hook_mlp_out"])
        ['blocks.1.hook_resid_post', 'blocks.1.hook_mlp_out']
    """
    from interp.models import as_model

    m = as_model(model)
    layers = range(m.n_layers) if layers is None else layers
    return resolve_hook_names(m, [f"blocks.{int(layer)}.{kind}" for layer in layers for kind in kinds])


def log_scales(lo: float | int = 0.25, hi: float | int = 8.0, n: int = 6) -> tuple[float, ...]:
    """``n`` log-spaced scales from ``lo`` to ``hi``.

    Example:
        >>> log_scales(0.25, 8.0, 6)
        (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    """
    if not (0 < lo <= hi and math.isfinite(hi)) or n < 1 or (n == 1 and lo != hi):
        raise LayerChoiceError(f"log_scales(lo={lo!r}, hi={hi!r}, n={n!r}); expected 0 < lo <= hi, n >= 1")
    if n == 1:
        return (float(lo),)
    step = math.log(hi / lo) / (n - 1)
    return tuple(round(lo * math.exp(i * step), 10) for i in range(n))


def _rows(rows: Sequence[Sequence[int]], what: str = "rows") -> list[list[int]]:
    out = [[int(t) for t in r] for r in rows]
    if not out or any(not r for r in out):
        raise LayerChoiceError(f"{what} must be a non-empty list of non-empty token rows")
    return out


def _pad(rows: list[list[int]], pad: int, width: int | None = None) -> Int[Tensor, "batch pos"]:
    width = width or max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def _pad_id(m) -> int:
    return m.pad_token_id if m.tokenizer is not None else 0


def _activations(
    m, rows: list[list[int]], names: list[str], batch_size: int, progress: bool, desc: str
) -> Iterator[tuple[int, dict[str, Tensor]]]:
    """``(first row, hook -> [batch, pos, d_model] on the CPU)`` per right-padded batch."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise LayerChoiceError(f"batch_size={batch_size!r}; expected a positive int")
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc=desc):
        toks = _pad(rows[start : start + batch_size], _pad_id(m))
        with torch.inference_mode(), record(m, names, device="cpu") as acts:
            m.forward(toks)  # causal: padding after a row's tokens does not reach them
        for n in names:
            if n not in acts:
                raise HookNameError(f"hook {n!r} did not fire during the forward pass; choose another")
            if acts[n].ndim != 3:
                raise LayerChoiceError(
                    f"hook {n!r} has activations of shape {tuple(acts[n].shape)}; expected "
                    "[batch, pos, d_model] (a residual, attention-output or MLP-output hook)"
                )
        yield start, acts


def _position_lists(positions: Sequence[Sequence[int]], rows: list[list[int]], what: str) -> list[list[int]]:
    if len(positions) != len(rows):
        raise LayerChoiceError(
            f"{what} has {len(positions)} position lists for {len(rows)} rows; give one per row"
        )
    out = []
    for i, (ps, row) in enumerate(zip(positions, rows, strict=True)):
        ps = [int(p) for p in ps]
        bad = [p for p in ps if not 0 <= p < len(row)]
        if bad:
            raise LayerChoiceError(f"{what}[{i}] holds positions {bad} outside row {i} of {len(row)} tokens")
        out.append(ps)
    if not any(out):
        raise LayerChoiceError(
            f"{what} selects no position in {len(rows)} rows; each side needs at least one"
        )
    return out


def contrast_vector(
    model,
    rows: Sequence[Sequence[int]],
    pos_a: Sequence[Sequence[int]],
    pos_b: Sequence[Sequence[int]],
    hooks: str | Sequence[str],
    batch_size: int = 32,
    progress: bool = False,
    contrast: Mapping[str, Any] | None = None,
) -> SteeringVector:
    """Difference of means ``mean(acts at pos_a) - mean(acts at pos_b)`` at each hook.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        rows: token ids, fed as given (no special token added), right-padded into batches.
        pos_a: per row, the positions showing the behaviour.
        pos_b: per row, the matched positions without it.
        hooks: hook names or globs (see :func:`hook_grid`).
        batch_size: rows per forward pass.
        progress: show a progress bar.
        contrast: a description of the contrast kept in the provenance (e.g. ``Contrast.meta``).

    Returns:
        A :class:`SteeringVector` of method ``matched-contrast`` with the counts in its provenance.

    Raises:
        LayerChoiceError: empty rows, a position list per row missing, a position outside its
            row, a side with no position, or a hook that is not ``[batch, pos, d_model]``.
        HookNameError: an unknown hook.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=4, n_ctx=8, d_head=2, d_vocab=5, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> v = contrast_vector(m, [[1, 2, 3]], [[2]], [[0, 1]], "blocks.0.hook_resid_post")
        >>> v.meta["method"], v.meta["provenance"]["positions"]["a"]
        ('matched-contrast', 1)
    """
    from interp.fingerprint import hash_token_rows, sha256_json
    from interp.models import as_model

    m = as_model(model)
    names = resolve_hook_names(m, hooks)
    rows = _rows(rows)
    a, b = _position_lists(pos_a, rows, "pos_a"), _position_lists(pos_b, rows, "pos_b")
    n_a, n_b = sum(map(len, a)), sum(map(len, b))
    sums: dict[str, Tensor] = {}
    for start, acts in _activations(m, rows, names, batch_size, progress, "contrast"):
        for side, sel in enumerate((a, b)):
            pairs = [(i, p) for i in range(len(acts[names[0]])) for p in sel[start + i]]
            if not pairs:
                continue
            bi, pi = torch.tensor(pairs).T
            for n in names:
                total = acts[n][bi, pi].double().sum(0)
                sums.setdefault(n, torch.zeros(2, total.shape[-1], dtype=torch.float64))[side] += total
    directions = {n: (s[0] / n_a - s[1] / n_b).float() for n, s in sums.items()}
    meta = {
        "method": "matched-contrast",
        "d_model": m.d_model,
        "model": model_meta(m),
        "provenance": {
            "source": "matched-contrast",
            "rows": {"count": len(rows), "sha256": hash_token_rows(rows)},
            "positions": {"a": n_a, "b": n_b, "sha256": sha256_json([a, b])},
            "contrast": dict(contrast) if contrast is not None else None,
        },
    }
    return SteeringVector(directions, meta)


def mean_activation_norms(
    model,
    rows: Sequence[Sequence[int]],
    hooks: str | Sequence[str],
    batch_size: int = 32,
    skip_first: bool = True,
) -> dict[str, float]:
    """Mean L2 norm of each hook's activation over the tokens of ``rows`` (padding excluded).

    With ``skip_first`` the first position of each row of two or more tokens is left out: the
    first token is an attention sink whose residual norm can dwarf every other's (SmolLM2-135M at
    ``blocks.15.hook_resid_post``: 24,860 at position 0 against 184 on average elsewhere, which put
    the mean at 362), so it is not a typical activation's length.

    Raises:
        LayerChoiceError: empty rows.
        HookNameError: an unknown hook.
    """
    from interp.models import as_model

    m = as_model(model)
    names = resolve_hook_names(m, hooks)
    rows = _rows(rows)
    totals = dict.fromkeys(names, 0.0)
    count = 0
    for start, acts in _activations(m, rows, names, batch_size, False, "norms"):
        lengths = torch.tensor([len(r) for r in rows[start : start + batch_size]])
        pos = torch.arange(acts[names[0]].shape[1])[None, :]
        mask = pos < lengths[:, None]
        if skip_first:
            mask &= (pos > 0) | (lengths[:, None] < 2)
        count += int(mask.sum())
        for n in names:
            totals[n] += float(acts[n][mask].double().norm(dim=-1).sum())
    return {n: t / count for n, t in totals.items()}


def rescale_to_layer_norm(
    vector: SteeringVector, model, rows: Sequence[Sequence[int]], batch_size: int = 32
) -> SteeringVector:
    """Each direction set to unit norm times its hook's mean activation norm over ``rows``.

    The factor and the norm of each hook are kept in ``meta["rescale"]``; a scale of 1 then adds
    one typical activation's length at every layer (Venhoff et al. 2025). The mean leaves out each
    row's first position, an attention sink (:func:`mean_activation_norms`).

    Args:
        vector: the vector to rescale.
        model: the model it will steer.
        rows: token ids of the text whose activation norms set the length (padding excluded).
        batch_size: rows per forward pass.

    Raises:
        LayerChoiceError: a direction of zero (or non-finite) norm, or empty rows.
        ModelMismatchError: the vector does not fit the model.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=4, n_ctx=8, d_head=2, d_vocab=5, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
        >>> r = rescale_to_layer_norm(v, m, [[1, 2, 3]])
        >>> name = "blocks.0.hook_resid_post"
        >>> abs(r.norms()[name] - r.meta["rescale"]["norms"][name]) < 1e-5
        True
    """
    from interp.fingerprint import hash_token_rows
    from interp.models import as_model

    m = as_model(model)
    vector.check_model(m)
    rows = _rows(rows)
    norms = mean_activation_norms(m, rows, list(vector.hook_names), batch_size)
    directions, factors = {}, {}
    for name, d in vector.directions.items():
        length = float(d.double().norm())
        if not math.isfinite(length) or length == 0.0:
            raise LayerChoiceError(
                f"the direction at {name!r} has norm {length}; cannot rescale it to a length"
            )
        factors[name] = norms[name] / length
        directions[name] = (d.double() * factors[name]).float()
    rescale = {
        "method": "layer-norm",
        "first_position": "left out of the mean (attention sink)",
        "norms": norms,
        "factors": factors,
        "rows": {"count": len(rows), "tokens": sum(map(len, rows)), "sha256": hash_token_rows(rows)},
    }
    return SteeringVector(directions, {**vector.meta, "rescale": rescale})


@dataclass(frozen=True)
class LayerSweepConfig:
    """How :func:`layer_sweep` applies the vector.

    Args:
        rescale: first set each direction to its hook's mean activation norm on the KL rows
            (:func:`rescale_to_layer_norm`), so scales are in units of the layer's norm.
        positions: where to add the vector: ``None`` (every position), an int (``-1``: the
            last), or a :class:`interp.selectors.Selector` evaluated on the tokens seen so far
            (the same positions in a full pass and in each cached decoding step), which picks
            where the effect is measured and where the KL rows are steered alike: a selector that
            never fires on the neutral rows costs them nothing.
        kl_floor: the KL (nats per token) below which a cost counts as this floor, so that
            effect per unit KL stays finite.
        batch_size: rows per forward pass for the norms and the KL.
        min_effect: the effect a cell must exceed to be chosen (``0``: any rise). Effect per
            unit KL favours the smallest scales (KL grows about quadratically in the scale, the
            effect about linearly), so a target effect keeps the choice at a useful dose.
    """

    rescale: bool = True
    positions: int | Selector | None = None
    kl_floor: float = 1e-4
    batch_size: int = 32
    min_effect: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.rescale, bool):
            raise ValueError(f"rescale={self.rescale!r}; expected True or False")
        if self.positions is not None and not isinstance(self.positions, Selector) and (
            isinstance(self.positions, bool) or not isinstance(self.positions, int)
        ):
            raise ValueError(
                f"positions={self.positions!r}; expected None, an int or a selector (interp.selectors)"
            )
        if not (
            isinstance(self.kl_floor, int | float) and math.isfinite(self.kl_floor) and self.kl_floor > 0
        ):
            raise ValueError(f"kl_floor={self.kl_floor!r}; expected a finite number > 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected a positive int")
        if not (
            isinstance(self.min_effect, int | float)
            and math.isfinite(self.min_effect)
            and self.min_effect >= 0
        ):
            raise ValueError(f"min_effect={self.min_effect!r}; expected a finite number >= 0")


def pick_best(
    effect: Mapping[str, Sequence[float]],
    kl: Mapping[str, Sequence[float]],
    scales: Sequence[float],
    kl_floor: float,
    min_effect: float = 0.0,
) -> tuple[str, float] | None:
    """The ``(hook, scale)`` of largest ``effect / max(kl, kl_floor)`` among cells with effect
    above ``min_effect``; ``None`` when there is none.

    Example:
        >>> effect, kl = {"a": [1.0, 3.0], "b": [0.5, -1.0]}, {"a": [1.0, 2.0], "b": [0.1, 0.1]}
        >>> pick_best(effect, kl, [1.0, 2.0], 1e-4)
        ('b', 1.0)
    """
    best, key = None, -math.inf
    for hook, values in effect.items():
        for i, e in enumerate(values):
            ratio = e / max(kl[hook][i], kl_floor)
            if e > min_effect and ratio > key:
                best, key = (hook, float(scales[i])), ratio
    return best


@dataclass(frozen=True)
class LayerSweepResult:
    """Effect and KL cost of each hook's direction alone at each scale.

    Attributes:
        hooks: the hooks swept, in order.
        scales: the multipliers (of the rescaled directions: units of the layer's norm).
        effect: hook -> per scale, the effect metric under steering minus unsteered.
        kl: hook -> per scale, KL(unsteered || steered) on the neutral rows, nats per token.
        baseline: the effect metric unsteered.
        kl_floor: the KL floor of effect per unit KL.
        best: ``(hook, scale)`` of best effect per unit KL among positive effects, or ``None``.
        meta: the model, the vector's provenance and rescaling, the sweep's settings.
    """

    hooks: tuple[str, ...]
    scales: tuple[float, ...]
    effect: dict[str, tuple[float, ...]]
    kl: dict[str, tuple[float, ...]]
    baseline: float
    kl_floor: float
    best: tuple[str, float] | None
    meta: dict = field(default_factory=dict)

    def ratio(self, hook: str) -> tuple[float, ...]:
        """Effect per unit KL of ``hook`` at each scale."""
        return tuple(e / max(k, self.kl_floor) for e, k in zip(self.effect[hook], self.kl[hook], strict=True))

    def rows(self) -> list[list[Any]]:
        return [
            [h, s, self.effect[h][i], self.kl[h][i], self.ratio(h)[i]]
            for h in self.hooks
            for i, s in enumerate(self.scales)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "hooks": list(self.hooks),
            "scales": list(self.scales),
            "baseline": self.baseline,
            "kl_floor": self.kl_floor,
            "best": None if self.best is None else {"hook": self.best[0], "scale": self.best[1]},
            "table": [
                dict(zip(("hook", "scale", "effect", "kl", "effect_per_kl"), r, strict=True))
                for r in self.rows()
            ],
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        table = format_table(["hook", "scale", "effect", "kl", "effect/kl"], self.rows())
        if self.best is None:
            return table + f"\nbest: none ({self.meta.get('selection', 'no cell qualified')})"
        return table + f"\nbest: {self.best[0]} at scale {self.best[1]:g}"

    def plot(self, path_or_ax=None):
        """Effect against scale (left) and against KL (right) per hook, the best starred; a path
        saves a PNG and returns it."""
        import matplotlib.pyplot as plt

        if path_or_ax is None or isinstance(path_or_ax, str | Path):
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        else:
            axes, fig = [path_or_ax, path_or_ax.twinx()], path_or_ax.figure
        for h in self.hooks:
            axes[0].plot(self.scales, self.effect[h], marker="o", label=h)
            axes[1].plot(self.kl[h], self.effect[h], marker="o", label=h)
        if self.best is not None:
            i = self.scales.index(self.best[1])
            e, k = self.effect[self.best[0]][i], self.kl[self.best[0]][i]
            axes[0].plot([self.best[1]], [e], marker="*", markersize=14, color="k", linestyle="none")
            axes[1].plot([k], [e], marker="*", markersize=14, color="k", linestyle="none")
        axes[0].set_xscale("log", base=2)
        axes[0].set_xlabel("scale (x layer norm)" if self.meta.get("rescale", True) else "scale")
        axes[1].set_xlabel("KL on neutral text (nats/token)")
        for ax in axes:
            ax.set_ylabel("effect")
            ax.axhline(0.0, color="grey", linewidth=0.5)
        axes[0].legend(fontsize=6)
        if isinstance(path_or_ax, str | Path):
            return save_figure(fig, path_or_ax)
        return axes


def _check_scales(scales: Sequence[float | int]) -> tuple[float, ...]:
    ok = bool(scales) and all(
        isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in scales
    )
    if not ok:
        raise LayerChoiceError(
            f"scales={tuple(scales)!r}; expected a non-empty sequence of finite numbers > 0 "
            "(the unsteered baseline is measured once, without a scale)"
        )
    return tuple(float(s) for s in scales)


def _measure(effect_metric: Callable[[Any], float], m, where: str) -> float:
    value = effect_metric(m)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise LayerChoiceError(f"the effect metric returned {value!r} {where}; expected a number") from None
    if not math.isfinite(value):
        raise LayerChoiceError(f"the effect metric returned {value} {where}; expected a finite number")
    return value


def layer_sweep(
    model,
    vector_by_hook: SteeringVector | Mapping[str, Tensor],
    scales: Sequence[float | int],
    effect_metric: Callable[[Any], float],
    kl_rows: Sequence[Sequence[int]],
    config: LayerSweepConfig = LayerSweepConfig(),
    progress: bool = False,
) -> LayerSweepResult:
    """Each hook's direction alone at each scale: effect, KL cost, and the best by effect per KL.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        vector_by_hook: one direction per hook to sweep (e.g. :func:`contrast_vector` over
            :func:`hook_grid`), or a mapping hook -> direction.
        scales: multipliers, e.g. :func:`log_scales` ``(0.25, 8, 6)``; with ``config.rescale`` in
            units of each hook's mean activation norm.
        effect_metric: ``effect_metric(model) -> float``, larger = more of the behaviour; run
            once unsteered and once per hook and scale.
        kl_rows: token ids of neutral text: the KL cost's rows (:func:`steering.sweep.kl_cost`)
            and, with ``config.rescale``, the norms' rows.
        config: rescaling, positions, KL floor, batch size.
        progress: a progress bar over hooks.

    Returns:
        A :class:`LayerSweepResult` with the whole table and the chosen ``(hook, scale)``.

    Raises:
        LayerChoiceError: bad scales, empty rows, a metric that gives no finite number.
        ModelMismatchError: the vector does not fit the model.
        HookNameError: a hook the model lacks (checked before anything runs).
    """
    from tqdm.auto import tqdm

    from interp.fingerprint import hash_token_rows
    from interp.models import as_model
    from steering.sweep import kl_cost

    m = as_model(model)
    vec = vector_by_hook
    if not isinstance(vec, SteeringVector):
        vec = SteeringVector(
            {k: torch.as_tensor(v).float() for k, v in vector_by_hook.items()}, {"method": "manual"}
        )
    vec.check_model(m)
    resolve_hook_names(m, list(vec.hook_names))
    scales = _check_scales(scales)
    rows = _rows(kl_rows, "kl_rows")
    if config.rescale:
        vec = rescale_to_layer_norm(vec, m, rows, config.batch_size)
    kl_metric = kl_cost(m, rows, config.batch_size, name="kl")  # the unsteered reference, computed now
    baseline = _measure(effect_metric, m, "unsteered")
    effect: dict[str, tuple[float, ...]] = {}
    kl: dict[str, tuple[float, ...]] = {}
    for hook in tqdm(vec.hook_names, desc="hooks", disable=not progress):
        es, ks = [], []
        for s in scales:
            with vec.apply(m, scale=s, positions=config.positions, layers=[hook]):
                es.append(_measure(effect_metric, m, f"at {hook!r}, scale {s:g}") - baseline)
                ks.append(float(kl_metric(m)["kl"]))
        effect[hook], kl[hook] = tuple(es), tuple(ks)
    where = config.positions
    meta = {
        "model": {"spec": m.spec, "fingerprint": m.fingerprint},
        "vector": {
            "method": vec.meta.get("method"),
            "provenance": vec.meta.get("provenance"),
            "rescale": vec.meta.get("rescale"),
        },
        "positions": repr(where) if isinstance(where, Selector) else where,  # JSON: a selector's repr
        "rescale": config.rescale,
        "kl_rows": {"count": len(rows), "sha256": hash_token_rows(rows)},
        "effect_metric": getattr(effect_metric, "__name__", type(effect_metric).__name__),
        "selection": f"largest effect / max(kl, kl_floor) among effect > {config.min_effect:g}",
    }
    best = pick_best(effect, kl, scales, config.kl_floor, float(config.min_effect))
    return LayerSweepResult(vec.hook_names, scales, effect, kl, baseline, float(config.kl_floor), best, meta)
