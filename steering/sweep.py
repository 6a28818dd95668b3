"""Dose-response sweeps: a steering vector's effect on a behaviour, and its costs, across scales.

For each scale the vector is applied (:meth:`SteeringVector.apply`) and every metric is measured
under it. A metric is any callable ``metric(model) -> {name: value}``; targets are the behaviour
being steered (markers per response, solve rate in and out of distribution), costs are what it
may break (fact recall, trace validity, KL to the unsteered model on neutral text). Generation
runs with the key-value cache (:func:`interp.generation.generate`), so the vector reaches the
prompt once and every new token once (see :mod:`steering.vectors`).

:func:`steering.task_metrics.task_metrics` builds targets and costs from any task; the
organism's own (markers, solve rates, fact recall, trace validity) come from
:func:`interp.organism.steering.organism_metrics`::

    targets, costs = task_metrics(model, task)
    result = dose_response(model, vec, targets, costs, SweepConfig(scales=(0, 2, 4, 8)))
    print(result); result.save("sweep.json"); result.plot("sweep.png")
"""

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import HookNameError
from interp.hooks import Positions
from interp.results import format_table, save_figure, save_json
from interp.selectors import Selector

Metric = Callable[[Any], Mapping[str, float]]

log = logging.getLogger(__name__)


def generate_steered(
    model,
    vector,
    prompts: list[list[int]],
    max_new_tokens: int,
    scale: float = 1.0,
    positions: Positions = None,
    layers: Sequence[int | str] | None = None,
    **kwargs: Any,
) -> list[list[int]]:
    """Generate with the key-value cache while ``vector`` is applied at ``scale``.

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``hf:`` bridge.
        vector: a :class:`steering.vectors.SteeringVector` (``None``: unsteered).
        prompts: token ids of each prompt.
        max_new_tokens: most tokens to add per prompt.
        scale: the vector's multiplier.
        positions: ``None`` steers every position (the prompt once, each new token once).
        layers: restrict the vector to these layers or hooks.
        **kwargs: passed on to :func:`interp.generation.generate` (``stop_id``, ``temperature``...).

    Returns:
        The generated ids of each prompt.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from steering.vectors import SteeringVector
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=4, n_ctx=8, d_head=2, d_vocab=5, act_fn="relu")
        >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
        >>> [len(o) for o in generate_steered(HookedTransformer(cfg), v, [[1, 2]], 3, scale=2.0)]
        [3]
    """
    from interp.generation import generate as gen

    if vector is None:
        return gen(model, prompts, max_new_tokens, **kwargs)
    with vector.apply(model, scale=scale, positions=positions, layers=layers):
        return gen(model, prompts, max_new_tokens, **kwargs)


@dataclass(frozen=True)
class SweepConfig:
    """How the vector is applied in a sweep.

    Args:
        scales: the multipliers, in order (include ``0`` for the unsteered baseline).
        positions: where to add the vector (``None``: every position; an index; or a
            :class:`interp.selectors.Selector`, evaluated on the tokens seen so far, also through
            the key-value cache; see :mod:`steering.vectors`).
        layers: restrict the vector to these layer indices or hook names.
        gate: steer only where this gate fires (:func:`steering.conditional.steer_when`; a
            :class:`~steering.conditional.LinearGate` or :class:`~steering.conditional.FeatureGate`);
            the share of positions steered at each scale is then reported as ``steered_share``
            (also for a selector in ``positions``). Not together with ``positions``.
    """

    scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
    positions: Positions = None
    layers: tuple[int | str, ...] | None = None
    gate: Any = None

    def __post_init__(self) -> None:
        if not self.scales or not all(isinstance(s, int | float) and math.isfinite(s) for s in self.scales):
            raise ValueError(f"scales={self.scales!r}; expected a non-empty tuple of finite numbers")
        if self.gate is not None and self.positions is not None:
            raise ValueError(
                f"gate={self.gate!r} with positions={self.positions!r}; a gate decides the positions "
                "itself: give one of the two"
            )
        if self.gate is not None and not (
            callable(self.gate) and isinstance(getattr(self.gate, "hook", None), str)
        ):
            raise ValueError(
                f"gate={self.gate!r}; expected a LinearGate or FeatureGate (a callable with a hook name)"
            )


@dataclass(frozen=True)
class SweepResult:
    """Targets and costs measured at each scale.

    Attributes:
        scales: the multipliers.
        values: metric name -> one value per scale.
        targets: the names in ``values`` that measure the steered behaviour (the rest are costs).
        meta: the vector's provenance, the model and the sweep's settings.
    """

    scales: tuple[float, ...]
    values: dict[str, tuple[float, ...]]
    targets: tuple[str, ...]
    meta: dict = field(default_factory=dict)

    @property
    def costs(self) -> tuple[str, ...]:
        return tuple(k for k in self.values if k not in self.targets)

    def at(self, scale: float) -> dict[str, float]:
        """Every metric at one scale of the sweep."""
        if scale not in self.scales:
            raise KeyError(f"scale {scale!r} was not swept; scales are {list(self.scales)}")
        i = self.scales.index(scale)
        return {k: v[i] for k, v in self.values.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scales": list(self.scales),
            "targets": {k: list(self.values[k]) for k in self.targets},
            "costs": {k: list(self.values[k]) for k in self.costs},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        names = [*self.targets, *self.costs]
        rows = [[s, *(self.values[k][i] for k in names)] for i, s in enumerate(self.scales)]
        return format_table(["scale", *names], rows)

    def plot(self, path_or_ax=None):
        """Targets (left) and costs (right) against scale; a path saves a PNG and returns it."""
        import matplotlib.pyplot as plt

        if path_or_ax is None or isinstance(path_or_ax, str | Path):
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        else:
            axes, fig = [path_or_ax, path_or_ax.twinx()], path_or_ax.figure
        for ax, names, title in ((axes[0], self.targets, "behaviour"), (axes[1], self.costs, "costs")):
            for k in names:
                ax.plot(self.scales, self.values[k], marker="o", label=k)
            ax.set_xlabel("scale")
            ax.set_title(title)
            if names:
                ax.legend(fontsize=7)
        if isinstance(path_or_ax, str | Path):
            return save_figure(fig, path_or_ax)
        return axes


def check_layers(layers: Sequence[int | str] | None, vector, n_layers: int | None = None) -> None:
    """Refuse layers outside ``0 .. n_layers - 1``, or that the vector has no direction at.

    Args:
        layers: layer indices or hook names (``None``: all of the vector's; nothing to check).
        vector: a :class:`steering.vectors.SteeringVector`.
        n_layers: the model's layer count, when known.

    Raises:
        HookNameError: naming the layer and the valid range, or the layers the vector has.

    Example:
        >>> from steering.vectors import SteeringVector
        >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)})
        >>> check_layers([5], v, n_layers=2)
        Traceback (most recent call last):
        ...
        interp.errors.HookNameError: layer 5 is out of range: the model has 2 layers, 0 to 1
    """
    if layers is None:
        return
    for key in layers:
        if isinstance(key, int) and n_layers is not None and not 0 <= key < n_layers:
            raise HookNameError(
                f"layer {key} is out of range: the model has {n_layers} layers, 0 to {n_layers - 1}"
            )
    vector.select(layers)  # lists the vector's hooks when it has no direction at one


def _positions_meta(positions: Positions) -> Any:
    """``positions`` as JSON: ``None``, an index or a list of them as they are, anything else (a
    selector, a slice, a mask) as its ``repr``."""
    if positions is None or isinstance(positions, int):
        return positions
    if isinstance(positions, list | tuple) and all(isinstance(p, int) for p in positions):
        return list(positions)
    return repr(positions)


@contextmanager
def _counted(m, vector, config: "SweepConfig", scale: float) -> Iterator[Any]:
    """``vector`` applied at ``config.positions`` (a selector), yielding the selection's counts: a
    zero vector at the first steered hook, added through :func:`steering.positions.steer_at`, counts
    the positions the selector picks without changing any activation."""
    from steering.positions import steer_at

    hook, direction = next(iter(vector.select(config.layers).items()))
    with (
        vector.apply(m, scale=scale, positions=config.positions, layers=config.layers),
        steer_at(m, hook, torch.zeros_like(direction), config.positions, scale=0.0) as counting,
    ):
        yield counting.stats


def _warn_if_never_steered(shares: "list[float] | None", config: "SweepConfig") -> None:
    """A log warning when the positions chosen (selector or gate) were never steered at any scale."""
    if not shares or any(x > 0 for x in shares if not math.isnan(x)):
        return
    where = f"positions={config.positions!r}" if config.gate is None else f"gate={config.gate!r}"
    log.warning(
        "%s steered no position at any scale: the sweep measured the unsteered model; a word "
        "matches only as the token it is inside text (e.g. ' the' with its space on a BPE model)",
        where,
    )


def dose_response(
    model,
    vector,
    targets: Iterable[Metric],
    costs: Iterable[Metric] = (),
    config: SweepConfig = SweepConfig(),
    progress: bool = False,
) -> SweepResult:
    """Measure every target and cost metric under the vector at each scale.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        vector: a :class:`steering.vectors.SteeringVector`.
        targets: metrics of the behaviour, each ``metric(model) -> {name: value}``.
        costs: metrics of what steering may break (e.g. :func:`kl_cost`).
        config: scales, positions, layers.
        progress: a progress bar over scales.

    Returns:
        A :class:`SweepResult`.

    Raises:
        ValueError: two metrics report the same name.
        ModelMismatchError: the vector does not fit the model.
        HookNameError: ``config.layers`` names a layer the model lacks or the vector has no
            direction at (checked before anything runs).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from steering.vectors import SteeringVector
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=4, n_ctx=8, d_head=2, d_vocab=5, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
        >>> r = dose_response(m, v, [], [kl_cost(m, [[1, 2, 3]])], SweepConfig(scales=(0.0, 5.0)))
        >>> r.values["kl_to_unsteered"][0]
        0.0
    """
    from tqdm.auto import tqdm

    from interp.models import as_model

    m = as_model(model)
    targets, costs = list(targets), list(costs)
    vector.check_model(m)
    check_layers(config.layers, vector, m.n_layers)
    values: dict[str, list[float]] = {}
    target_names: list[str] = []
    for scale in tqdm(config.scales, desc="scales", disable=not progress):
        if isinstance(config.positions, Selector):
            with _counted(m, vector, config, float(scale)) as stats:
                measured = [(True, fn(m)) for fn in targets] + [(False, fn(m)) for fn in costs]
            measured.append((False, {"steered_share": stats.share}))
        elif config.gate is None:
            with vector.apply(m, scale=float(scale), positions=config.positions, layers=config.layers):
                measured = [(True, fn(m)) for fn in targets] + [(False, fn(m)) for fn in costs]
        else:
            from steering.conditional import steer_when

            with steer_when(m, vector, config.gate, scale=float(scale), layers=config.layers) as stats:
                measured = [(True, fn(m)) for fn in targets] + [(False, fn(m)) for fn in costs]
            measured.append((False, {"steered_share": stats.share}))
        seen: set[str] = set()
        for is_target, out in measured:
            for k, v in out.items():
                if k in seen:
                    raise ValueError(f"two metrics report {k!r}; metric names must be unique")
                seen.add(k)
                values.setdefault(k, []).append(float(v))
                if is_target and k not in target_names:
                    target_names.append(k)
    _warn_if_never_steered(values.get("steered_share"), config)
    meta = {
        "model": {"spec": m.spec, "fingerprint": m.fingerprint},
        "vector": {
            "method": vector.meta.get("method"),
            "hooks": list(vector.hook_names),
            "model": vector.meta.get("model"),
            "provenance": vector.meta.get("provenance"),
        },
        "positions": _positions_meta(config.positions),
        "layers": None if config.layers is None else list(config.layers),
        "gate": None
        if config.gate is None
        else {
            "hook": config.gate.hook,
            "kind": type(config.gate).__name__,
            "threshold": float(getattr(config.gate, "threshold", math.nan)),
        },
    }
    return SweepResult(
        tuple(float(s) for s in config.scales),
        {k: tuple(v) for k, v in values.items()},
        tuple(target_names),
        meta,
    )


def _log_probs(model, rows: list[list[int]], pad: int) -> tuple[Float[Tensor, "batch pos d_vocab"], Tensor]:
    width = max(len(r) for r in rows)
    toks = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.bool)
    with torch.inference_mode():
        logits = model.forward(toks).float().cpu()
    return logits.log_softmax(-1), mask


def kl_cost(
    model, rows: Sequence[Sequence[int]], batch_size: int = 32, name: str = "kl_to_unsteered"
) -> Metric:
    """A metric: KL(unsteered || current) of next-token distributions, mean per token.

    The unsteered log-probabilities are computed once, now (so build the metric outside any
    steering context); each call runs one forward pass per batch of ``rows`` (right-padded,
    padding excluded from the mean).

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        rows: token ids of the neutral text.
        batch_size: rows per forward pass.
        name: the reported metric's name.

    Returns:
        ``metric(model) -> {name: mean KL in nats per token}``.

    Raises:
        ValueError: no rows or an empty row.
    """
    from interp.models import as_model

    m = as_model(model)
    rows = [list(map(int, r)) for r in rows]
    if not rows or any(not r for r in rows):
        raise ValueError("kl_cost needs at least one non-empty row of neutral tokens")
    pad = m.pad_token_id if m.tokenizer is not None else 0
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    reference = [_log_probs(m, c, pad) for c in chunks]

    def metric(model_now) -> dict[str, float]:
        total, count = 0.0, 0
        for chunk, (ref, mask) in zip(chunks, reference, strict=True):
            now, _ = _log_probs(as_model(model_now), chunk, pad)
            kl = (ref.exp() * (ref - now)).sum(-1)
            total += float(kl[mask].double().sum())
            count += int(mask.sum())
        return {name: total / count}

    return metric
