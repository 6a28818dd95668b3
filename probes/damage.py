"""Layer-wise damage localisation: in which layers did fine-tuning break what the base could do?

Four kinds of evidence, per layer and component (attention, MLP, residual stream):

(a) cross-model patching, both ways. *Restoration* of a site: the tuned model computes that site
    with the base model's weights; the share of the lost score it wins back is
    ``(score_patched - score_tuned) / (score_base - score_tuned)``. *Damage*: the base model
    computes the site with the tuned weights; the share of the loss it brings in is
    ``(score_base - score_patched) / (score_base - score_tuned)``.
(b) probe retention: linear probes fitted on the base model's residual stream (one per layer,
    :func:`probes.linear.fit_probes`), applied unchanged to the tuned model's same layer.
(c) weight change: ``||W_tuned - W_base||_F / ||W_base||_F`` per component (all its parameters
    together), embeddings and the final norm + unembedding separately.
(d) representational similarity: linear CKA (:mod:`probes.cka`) between the two models'
    activations on the same tokens, per site.

How patching is done, and why. The scorer may generate text with a key-value cache, so the
patch must hold for every forward call the scorer makes, on the tokens the patched model itself
produces. :func:`cross_patch` therefore *transplants weights*: inside the context the receiver's
parameters of that component are the donor's, restored in ``finally``. For an attention or MLP
output this is exactly "the donor's component applied to the receiver's input at that site".
A hook that recomputed the donor's attention at the hook point would be wrong under a KV
cache: at a decoding step it sees only the new position, while the donor's attention needs
the donor's keys and values of every earlier position; with the transplant, the receiver's
cache at that layer is filled by the donor's key/value weights from the first token on, so
cached and uncached decoding agree (tested). ``blocks.L.hook_resid_post`` transplants the
embeddings and blocks ``0..L``: the residual stream after L is then the donor's on the same
tokens (a classic activation patch), again correct under a cache. With tied input and output
embeddings (GPT-2) that transplant also swaps the unembedding.
"""

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from interp.errors import InterpError
from interp.hooks import record, resolve_hook_names
from interp.models import Model, load_model
from interp.results import format_table, save_figure, save_json
from probes.cka import CKAStats
from probes.linear import ProbeConfig, fit_probes

log = logging.getLogger(__name__)

Scorer = Callable[[Model], float]
COMPONENTS = ("attn", "mlp", "resid_post")
HOOKS = {
    "attn": "blocks.{}.hook_attn_out",
    "mlp": "blocks.{}.hook_mlp_out",
    "resid_post": "blocks.{}.hook_resid_post",
}
EVIDENCE = ("restoration", "weight_change", "cka_drop", "probe_drop")
_SITE = re.compile(r"^blocks\.(\d+)\.hook_(attn_out|mlp_out|resid_post)$")
_BLOCK = re.compile(r"(?:^|\.)(?:blocks|h|layers|layer)\.(\d+)\.")
_ATTN = re.compile(r"(?:^|\.)(?:attn|self_attn|attention|ln1|ln_1|input_layernorm)(?:\.|$)")
_MLP = re.compile(r"(?:^|\.)(?:mlp|ln2|ln_2|post_attention_layernorm|feed_forward)(?:\.|$)")
_EMBED = re.compile(r"embed|wte|wpe")


class DamageError(InterpError, ValueError):
    """Two models that cannot be compared, or a scorer that failed."""


@dataclass(frozen=True)
class DamageConfig:
    """Settings of :func:`localise_damage`.

    Args:
        components: which sites are patched: ``attn`` (``hook_attn_out``), ``mlp``
            (``hook_mlp_out``), ``resid_post`` (``hook_resid_post``).
        directions: ``both`` (restoration and damage) or ``restore`` (restoration only: half the
            scorer calls).
        batch_size: rows per forward pass when recording activations for probes and CKA.
        probe: settings of the base model's probes (fitted on the probe task's training part).
        probe_test_fraction: share of the probe task held out, where both models are measured.
        threshold: layers whose evidence reaches ``threshold`` times the largest are named.
        min_gap: a score gap ``base - tuned`` at or below this is no damage to localise.
        seed: the probe task's train/test split.
    """

    components: tuple[str, ...] = COMPONENTS
    directions: Literal["both", "restore"] = "both"
    batch_size: int = 64
    probe: ProbeConfig = ProbeConfig(control=False)
    probe_test_fraction: float = 0.25
    threshold: float = 0.5
    min_gap: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [c for c in self.components if c not in COMPONENTS]
        if bad or not self.components:
            raise ValueError(f"components={self.components!r}; expected a non-empty subset of {COMPONENTS}")
        if self.directions not in ("both", "restore"):
            raise ValueError(f"directions={self.directions!r}; expected 'both' or 'restore'")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected >= 1")
        if not 0 < self.probe_test_fraction < 1:
            raise ValueError(f"probe_test_fraction={self.probe_test_fraction!r}; expected in (0, 1)")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold={self.threshold!r}; expected in (0, 1]")
        if self.min_gap < 0:
            raise ValueError(f"min_gap={self.min_gap!r}; expected >= 0")


@dataclass(frozen=True)
class ProbeTask:
    """Inputs and labels for probe retention: one labelled position per token row.

    Args:
        name: what the label is, for the report.
        tokens: token ids of each row.
        positions: the labelled position of each row (negative counts from the end).
        labels: class ``0..n_class-1`` of each row (at least two classes).
    """

    name: str
    tokens: tuple[tuple[int, ...], ...]
    positions: tuple[int, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.tokens) == len(self.positions) == len(self.labels) or len(self.tokens) < 4:
            raise ValueError(
                f"probe task {self.name!r}: {len(self.tokens)} rows, {len(self.positions)} positions, "
                f"{len(self.labels)} labels; expected the same number, at least 4"
            )
        for i, (row, p) in enumerate(zip(self.tokens, self.positions, strict=True)):
            if not -len(row) <= p < len(row):
                raise ValueError(
                    f"probe task {self.name!r}: position {p} is outside row {i} of length {len(row)}"
                )
        if len(set(self.labels)) < 2 or min(self.labels) < 0:
            raise ValueError(
                f"probe task {self.name!r}: labels must be 0..n_class-1 with two classes or more"
            )


# --- comparing architectures, grouping parameters -------------------------------------------------


def check_same_architecture(base: Model, tuned: Model) -> None:
    """Raise :class:`DamageError` naming both models unless they share architecture and tokenizer.

    Compared: ``n_layers``, ``d_model``, hook names, tokenizer hash, parameter names and shapes.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> def tiny(n):
        ...     kw = dict(d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        ...     return Model(HookedTransformer(HookedTransformerConfig(n_layers=n, **kw)), None, f"tiny{n}")
        >>> check_same_architecture(tiny(1), tiny(2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        probes.damage.DamageError: base 'tiny1' and tuned 'tiny2' differ in architecture: n_layers 1 vs 2; ...
    """
    diffs = []
    for attr in ("n_layers", "d_model"):
        if getattr(base, attr) != getattr(tuned, attr):
            diffs.append(f"{attr} {getattr(base, attr)} vs {getattr(tuned, attr)}")
    hb, ht = set(base.hook_names), set(tuned.hook_names)
    if hb != ht:
        diffs.append(f"hook names (only base: {sorted(hb - ht)[:3]}, only tuned: {sorted(ht - hb)[:3]})")
    tb, tt = base.tokenizer_hash(), tuned.tokenizer_hash()
    if tb != tt:
        diffs.append(f"tokenizer {tb} vs {tt}")
    pb = {n: tuple(p.shape) for n, p in base.module.named_parameters()}
    pt = {n: tuple(p.shape) for n, p in tuned.module.named_parameters()}
    if pb != pt:
        odd = sorted(n for n in pb.keys() | pt.keys() if pb.get(n) != pt.get(n))
        diffs.append(
            f"parameters {odd[:3]}: {[pb.get(n) for n in odd[:3]]} vs {[pt.get(n) for n in odd[:3]]}"
        )
    if diffs:
        raise DamageError(
            f"base {base.spec!r} and tuned {tuned.spec!r} differ in architecture: {'; '.join(diffs)}"
        )


def parameter_groups(model: Model) -> dict[str, list[str]]:
    """Parameter names per component: ``embed``, ``blocks.L.attn`` (with its norm), ``blocks.L.mlp``
    (with its norm), ``blocks.L.other``, ``final`` (final norm and unembedding).

    Recognises TransformerLens names (``blocks.0.attn.W_Q``) and Hugging Face names under a
    ``TransformerBridge`` (``transformer.h.0.attn...``, ``model.layers.0.self_attn...``).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> parameter_groups(Model(HookedTransformer(cfg), None, "t"))["blocks.0.mlp"][:3]
        ['blocks.0.ln2.w', 'blocks.0.ln2.b', 'blocks.0.mlp.W_in']
    """
    groups: dict[str, list[str]] = {}
    for name, _ in model.module.named_parameters():
        plain = name.replace("_original_component.", "")
        m = _BLOCK.search(plain)
        if m is None:
            key = "embed" if _EMBED.search(plain) else "final"
        else:
            rest = plain[m.end() :]
            kind = "attn" if _ATTN.search(rest) else "mlp" if _MLP.search(rest) else "other"
            key = f"blocks.{m.group(1)}.{kind}"
        groups.setdefault(key, []).append(name)
    return groups


def _site_params(model: Model, site: str) -> list[str]:
    m = _SITE.match(site)
    if m is None:
        raise ValueError(
            f"cannot patch {site!r}; expected blocks.L.hook_attn_out, blocks.L.hook_mlp_out or "
            "blocks.L.hook_resid_post"
        )
    resolve_hook_names(model, site)  # a layer the model lacks: KeyError listing close names
    layer, kind = int(m.group(1)), m.group(2)
    groups = parameter_groups(model)
    if kind == "resid_post":
        keys = ["embed"] + [f"blocks.{i}.{k}" for i in range(layer + 1) for k in ("attn", "mlp", "other")]
    else:
        keys = [f"blocks.{layer}.{kind.removesuffix('_out')}"]
    names = [n for k in keys for n in groups.get(k, [])]
    if not names:
        raise DamageError(f"found no parameters of {site!r} in {model.spec!r} (groups: {sorted(groups)})")
    return names


@contextmanager
def cross_patch(receiver: Model, donor: Model, site: str) -> Iterator[None]:
    """Make ``receiver`` compute ``site`` with ``donor``'s weights, on its own inputs, in the body.

    See the module docstring for why this is a weight transplant and why it is right under a
    key-value cache. The receiver's weights are restored on exit, exceptions included; its
    cached :attr:`Model.fingerprint` is not recomputed inside the body.

    Args:
        receiver: the model that runs.
        donor: a model of the same architecture (see :func:`check_same_architecture`).
        site: ``blocks.L.hook_attn_out`` (attention of block L, with its norm),
            ``blocks.L.hook_mlp_out`` (MLP of block L, with its norm) or
            ``blocks.L.hook_resid_post`` (embeddings and blocks ``0..L``).

    Raises:
        ValueError: another kind of site; HookNameError: a layer the model lacks.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> a, b = (Model(HookedTransformer(cfg), None, s) for s in "ab")
        >>> x = torch.tensor([[1, 2, 3]])
        >>> with cross_patch(a, b, "blocks.0.hook_resid_post"):
        ...     torch.equal(a(x), b(x))
        True
    """
    names = _site_params(receiver, site)
    mine, theirs = dict(receiver.module.named_parameters()), dict(donor.module.named_parameters())
    saved = {n: mine[n].detach().clone() for n in names}
    try:
        with torch.no_grad():
            for n in names:
                mine[n].copy_(theirs[n].to(device=mine[n].device, dtype=mine[n].dtype))
        yield
    finally:
        with torch.no_grad():
            for n, value in saved.items():
                mine[n].copy_(value)


def weight_change(base: Model, tuned: Model) -> dict[str, float]:
    """``||W_tuned - W_base||_F / ||W_base||_F`` per parameter group (see :func:`parameter_groups`),
    plus ``blocks.L`` (the whole block).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> a = Model(HookedTransformer(cfg), None, "a"); b = Model(HookedTransformer(cfg), None, "b")
        >>> _ = b.module.load_state_dict(a.module.state_dict()); _ = b.module.blocks[0].mlp.W_in.data.mul_(3)
        >>> wc = weight_change(a, b); wc["blocks.0.attn"], wc["blocks.0.mlp"] > 0
        (0.0, True)
    """
    check_same_architecture(base, tuned)
    pb, pt = dict(base.module.named_parameters()), dict(tuned.module.named_parameters())
    groups = parameter_groups(base)
    for key in [k for k in groups if k.startswith("blocks.")]:
        groups.setdefault(key.rsplit(".", 1)[0], []).extend(groups[key])
    out = {}
    with torch.no_grad():
        for key, names in groups.items():
            diff = sum(float((pt[n].double() - pb[n].double().to(pt[n].device)).pow(2).sum()) for n in names)
            norm = sum(float(pb[n].double().pow(2).sum()) for n in names)
            out[key] = math.sqrt(diff / norm) if norm > 0 else (0.0 if diff == 0 else math.inf)
    return out


# --- activations: probes and CKA -----------------------------------------------------------------


def _batches(model: Model, rows: Sequence[Sequence[int]], positions: Sequence[int] | None, batch_size: int):
    """Right-padded token batches and the mask of kept positions (each row's ``position``, or all)."""
    if any(len(r) > model.n_ctx for r in rows):
        raise ValueError(f"a token row is longer than {model.spec!r}'s context of {model.n_ctx}")
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        toks = torch.full((len(chunk), max(map(len, chunk))), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros(toks.shape, dtype=torch.bool)
        for j, row in enumerate(chunk):
            toks[j, : len(row)] = torch.tensor(list(row), dtype=torch.long)
            if positions is None:
                mask[j, : len(row)] = True
            else:
                mask[j, positions[i + j] % len(row)] = True
        yield toks, mask


def _record(model: Model, hooks: list[str], toks, mask) -> torch.Tensor:
    """Activations ``[hook, n, d_model]`` at the masked positions: one forward pass."""
    with torch.inference_mode(), record(model, hooks, positions=mask, device="cpu") as acts:
        model(toks)
    return torch.stack([acts[h].float() for h in hooks])


def probe_retention(
    base: Model, tuned: Model, task: ProbeTask, config: DamageConfig = DamageConfig(), progress: bool = False
) -> dict[str, tuple[float, float]]:
    """Held-out accuracy of the base model's probes on the base and on the tuned model, per layer.

    Probes (one per ``blocks.L.hook_resid_post``) are fitted on the base model's activations of
    the task's training part and scored, unchanged, on both models' activations of its held-out
    part (a seeded split).

    Returns:
        hook name -> ``(accuracy on base, accuracy on tuned)``.
    """
    from tqdm.auto import tqdm

    hooks = [HOOKS["resid_post"].format(i) for i in range(base.n_layers)]
    xb, xt = [], []
    n_batches = math.ceil(len(task.tokens) / config.batch_size)
    for toks, mask in tqdm(
        _batches(base, task.tokens, task.positions, config.batch_size),
        total=n_batches,
        desc="probe activations",
        disable=not progress,
    ):
        xb.append(_record(base, hooks, toks, mask))
        xt.append(_record(tuned, hooks, toks, mask))
    xb, xt = torch.cat(xb, 1), torch.cat(xt, 1)
    y = torch.tensor(task.labels)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(config.seed))
    n_test = max(1, round(len(y) * config.probe_test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    if len(torch.unique(y[train])) < 2:
        raise ValueError(f"probe task {task.name!r}: the training part has a single class; add examples")
    probes = fit_probes(xb[:, train], y[train], hooks, config.probe)
    acc_b = (probes.predict(xb[:, test]) == y[test]).float().mean(1).tolist()
    acc_t = (probes.predict(xt[:, test]) == y[test]).float().mean(1).tolist()
    return {h: (a, b) for h, a, b in zip(hooks, acc_b, acc_t, strict=True)}


def cka_by_site(
    base: Model, tuned: Model, tokens: Sequence[Sequence[int]], batch_size: int = 64, progress: bool = False
) -> dict[str, float]:
    """Linear CKA between the two models at every attention, MLP and residual site (and
    ``blocks.0.hook_resid_pre``), over all positions of ``tokens``, streamed batch by batch."""
    from tqdm.auto import tqdm

    hooks = ["blocks.0.hook_resid_pre"] + [
        HOOKS[c].format(i) for i in range(base.n_layers) for c in COMPONENTS
    ]
    stats = CKAStats()
    for toks, mask in tqdm(
        _batches(base, tokens, None, batch_size),
        total=math.ceil(len(tokens) / batch_size),
        desc="CKA activations",
        disable=not progress,
    ):
        stats.update(_record(base, hooks, toks, mask), _record(tuned, hooks, toks, mask))
    return dict(zip(hooks, stats.value().tolist(), strict=True))


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DamageRow:
    """The evidence at one component: ``layer`` is ``None`` for ``embed`` and ``final``."""

    component: str
    layer: int | None
    site: str
    restoration: float | None = None
    damage: float | None = None
    weight_change: float | None = None
    cka: float | None = None
    probe_base: float | None = None
    probe_tuned: float | None = None

    @property
    def probe_drop(self) -> float | None:
        return None if self.probe_base is None else self.probe_base - self.probe_tuned


COLUMNS = ("site", "restoration", "damage", "weight_change", "cka", "probe_base", "probe_tuned")


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _top(values: Sequence[float | None]) -> int | None:
    """The layer with the largest positive value (the first of ties); ``None`` if none is positive."""
    pairs = [(v, -i) for i, v in enumerate(values) if v is not None and v > 0]
    return -max(pairs)[1] if pairs else None


@dataclass(frozen=True)
class DamageReport:
    """Where the damage lies: every evidence per layer and component, and a verdict.

    ``layer_evidence[e][L]`` ranks layers (higher: more damage): ``restoration`` and
    ``weight_change`` are the larger of the attention's and MLP's; ``cka_drop`` is how much
    residual-stream CKA falls across block L; ``probe_drop`` how much the probes' accuracy drop
    grows across block L.
    """

    base: str
    tuned: str
    scorer: str
    score_base: float
    score_tuned: float
    rows: tuple[DamageRow, ...]
    layer_evidence: dict[str, tuple[float | None, ...]]
    damaged_layers: tuple[int, ...]
    verdict: str
    meta: dict = field(default_factory=dict)

    @property
    def layer_evidence_lead(self) -> str:
        """The evidence the verdict ranks by: ``restoration``, or ``weight_change`` without a score gap."""
        return (
            "restoration"
            if any(v is not None for v in self.layer_evidence["restoration"])
            else "weight_change"
        )

    def top_layer(self, evidence: str) -> int | None:
        """The layer ranked first by one evidence (``None`` where it was not measured)."""
        if evidence not in EVIDENCE:
            raise ValueError(f"evidence {evidence!r}; expected one of {EVIDENCE}")
        return _top(self.layer_evidence[evidence])

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "tuned": self.tuned,
            "scorer": self.scorer,
            "score_base": self.score_base,
            "score_tuned": self.score_tuned,
            "rows": [
                {
                    **{k: _finite(v) if isinstance(v, float) else v for k, v in asdict(r).items()},
                    "probe_drop": _finite(r.probe_drop),
                }
                for r in self.rows
            ],
            "layer_evidence": {k: [_finite(v) for v in vs] for k, vs in self.layer_evidence.items()},
            "damaged_layers": list(self.damaged_layers),
            "verdict": self.verdict,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return save_json(self, path)

    def __str__(self) -> str:
        head = f"{self.scorer}: base {self.score_base:.3f}, tuned {self.score_tuned:.3f}"
        table = format_table(COLUMNS, [[getattr(r, c) for c in COLUMNS] for r in self.rows])
        return f"{head}\n{table}\n{self.verdict}"

    def plot(self, path_or_ax: "str | Path | Iterable[Any]"):
        """One panel per evidence (patching, weight change, CKA, probes) against the layer.

        Args:
            path_or_ax: a PNG path (the figure is saved and closed; the path is returned) or four
                matplotlib axes to draw into (returned).
        """
        import matplotlib.pyplot as plt

        if isinstance(path_or_ax, str | Path):
            fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
        else:
            axes, fig = list(path_or_ax), None
        titles = (
            "patching (share of lost score)",
            "weight change ||dW|| / ||W||",
            "CKA base vs tuned",
            "probe accuracy (base probes)",
        )
        series = (
            [("restoration", "restore"), ("damage", "damage")],
            [("weight_change", "")],
            [("cka", "")],
            [("probe_base", "on base"), ("probe_tuned", "on tuned")],
        )
        for ax, title, cols in zip(axes, titles, series, strict=True):
            for col, label in cols:
                for comp, marker in zip(COMPONENTS, "os^", strict=True):
                    pts = [(r.layer, getattr(r, col)) for r in self.rows if r.component == comp]
                    pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), marker=marker, label=f"{comp} {label}".strip())
            if not ax.lines:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("layer")
            ax.set_xticks(range(len(self.layer_evidence["restoration"])))
            for layer in self.damaged_layers:
                ax.axvspan(layer - 0.4, layer + 0.4, color="red", alpha=0.08)
            if ax.lines:
                ax.legend(fontsize=7)
        if fig is None:
            return axes
        named = f"layers {list(self.damaged_layers)}" if self.damaged_layers else "no single layer"
        lead = (
            "damage in"
            if self.layer_evidence_lead == "restoration"
            else "no score lost; weights changed most in"
        )
        fig.suptitle(f"{self.tuned} vs {self.base}: {lead} {named}", fontsize=10)
        return save_figure(fig, path_or_ax)


# --- the one call --------------------------------------------------------------------------------


def _score(scorer: Scorer, model: Model, what: str) -> float:
    name = getattr(scorer, "__name__", type(scorer).__name__)
    try:
        value = scorer(model)
    except InterpError:
        raise
    except Exception as exc:
        raise DamageError(f"scorer {name!r} raised {type(exc).__name__} on {what}: {exc}") from exc
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DamageError(f"scorer {name!r} returned {value!r} on {what}; expected a number") from None
    if not math.isfinite(value):
        raise DamageError(f"scorer {name!r} returned {value} on {what}; expected a finite number")
    return value


def localise_damage(
    base: "Model | str",
    tuned: "Model | str",
    scorer: Scorer,
    tokens: Sequence[Sequence[int]] | None = None,
    probe_task: ProbeTask | None = None,
    config: DamageConfig = DamageConfig(),
    progress: bool = True,
) -> DamageReport:
    """Rank layers and components by where fine-tuning damaged the task, on four kinds of evidence.

    Args:
        base: the model before fine-tuning (a :class:`Model` or a spec for ``load_model``).
        tuned: the fine-tuned model, of the same architecture.
        scorer: ``scorer(model) -> float``, higher is better (e.g. :func:`organism_scorer`); it
            is called on both models and on each patched one (see :func:`cross_patch`).
        tokens: token rows for CKA (all positions); default the probe task's rows; with
            neither, no CKA.
        probe_task: labels for probe retention; ``None``: no probes.
        config: sites, directions, batch size, probe settings, verdict threshold.
        progress: tqdm progress bars.

    Returns:
        A :class:`DamageReport`: table, figure, verdict.

    Raises:
        DamageError: different architectures (both named), or a scorer that raised or returned
            no finite number (the patched site is named).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> a, b = (Model(HookedTransformer(cfg), None, s) for s in ("base", "tuned"))
        >>> _ = b.module.load_state_dict(a.module.state_dict())
        >>> _ = b.module.blocks[1].mlp.W_out.data.mul_(-1)
        >>> x = torch.tensor([[1, 2, 3, 4, 0, 1]])
        >>> ref = a(x).argmax(-1)
        >>> agree = lambda m: float((m(x).argmax(-1) == ref).float().mean())
        >>> localise_damage(a, b, agree, tokens=x.tolist(), progress=False).top_layer("weight_change")
        1
    """
    from tqdm.auto import tqdm

    base, tuned = (m if isinstance(m, Model) else load_model(m) for m in (base, tuned))
    check_same_architecture(base, tuned)
    n = base.n_layers
    s_base = _score(scorer, base, f"the base model {base.spec!r}")
    s_tuned = _score(scorer, tuned, f"the tuned model {tuned.spec!r}")
    gap = s_base - s_tuned
    sites = [(c, i, HOOKS[c].format(i)) for i in range(n) for c in config.components]
    runs = [("restoration", tuned, base)] + ([("damage", base, tuned)] if config.directions == "both" else [])
    raw: dict[str, dict[str, float]] = {}
    if gap > config.min_gap:
        bar = tqdm(total=len(sites) * len(runs), desc="cross-model patching", disable=not progress)
        with bar:
            for _, _, site in sites:
                for kind, receiver, donor in runs:
                    with cross_patch(receiver, donor, site):
                        s = _score(scorer, receiver, f"{receiver.spec!r} with {site} from {donor.spec!r}")
                    raw.setdefault(site, {})[kind] = s
                    bar.update()
    else:
        log.info("no score lost (base %.4g, tuned %.4g): patching skipped", s_base, s_tuned)
    patch = {
        (kind, site): ((s - s_tuned) if kind == "restoration" else (s_base - s)) / gap
        for site, by_kind in raw.items()
        for kind, s in by_kind.items()
    }
    wc = weight_change(base, tuned)
    tokens = tokens if tokens is not None else (probe_task.tokens if probe_task is not None else None)
    cka = cka_by_site(base, tuned, tokens, config.batch_size, progress) if tokens is not None else {}
    probes = probe_retention(base, tuned, probe_task, config, progress) if probe_task is not None else {}

    wc_key = {"attn": "blocks.{}.attn", "mlp": "blocks.{}.mlp", "resid_post": "blocks.{}"}
    rows = [DamageRow("embed", None, "embed", weight_change=wc.get("embed"))]
    for i in range(n):
        for comp in COMPONENTS:
            site = HOOKS[comp].format(i)
            pb, pt = probes.get(site, (None, None))
            rows.append(
                DamageRow(
                    comp,
                    i,
                    site,
                    patch.get(("restoration", site)),
                    patch.get(("damage", site)),
                    wc.get(wc_key[comp].format(i)),
                    cka.get(site),
                    pb,
                    pt,
                )
            )
    rows.append(DamageRow("final", None, "final", weight_change=wc.get("final")))
    evidence = _layer_evidence(rows, cka, n)
    damaged, verdict = _verdict(evidence, rows, s_base, s_tuned, config)
    meta = {
        "base_fingerprint": base.fingerprint,
        "tuned_fingerprint": tuned.fingerprint,
        "n_cka_rows": len(tokens) if tokens is not None else 0,
        "probe_task": probe_task.name if probe_task else None,
        "n_probe_rows": len(probe_task.tokens) if probe_task else 0,
        "config": {**asdict(config), "probe": asdict(config.probe)},
        "patching": "weight transplant (probes.damage.cross_patch)",
        "patched_scores": raw,
    }
    name = getattr(scorer, "__name__", type(scorer).__name__)
    return DamageReport(
        base.spec, tuned.spec, name, s_base, s_tuned, tuple(rows), evidence, damaged, verdict, meta
    )


def _layer_evidence(
    rows: list[DamageRow], cka: dict[str, float], n: int
) -> dict[str, tuple[float | None, ...]]:
    def at(comp: str, i: int) -> DamageRow:
        return next(r for r in rows if r.component == comp and r.layer == i)

    def most(i: int, attr: str) -> float | None:
        vals = [_finite(getattr(at(c, i), attr)) for c in ("attn", "mlp")]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    def steps(values: list[float | None], first: float | None) -> tuple[float | None, ...]:
        prev = [first, *values[:-1]]
        return tuple(None if a is None or b is None else b - a for a, b in zip(prev, values, strict=True))

    resid = [_finite(cka.get(HOOKS["resid_post"].format(i))) for i in range(n)]
    drops = [_finite(at("resid_post", i).probe_drop) for i in range(n)]
    return {
        "restoration": tuple(most(i, "restoration") for i in range(n)),
        "weight_change": tuple(most(i, "weight_change") for i in range(n)),
        "cka_drop": tuple(
            None if v is None else -v for v in steps(resid, _finite(cka.get("blocks.0.hook_resid_pre")))
        ),
        "probe_drop": steps(drops, 0.0),
    }


def _verdict(
    evidence, rows, s_base: float, s_tuned: float, config: DamageConfig
) -> tuple[tuple[int, ...], str]:
    lead = "restoration" if any(v is not None for v in evidence["restoration"]) else "weight_change"
    values = evidence[lead]
    peak = max((v for v in values if v is not None), default=None)
    if peak is None or peak <= 0:
        text = f"No layer stands out: {lead} is nowhere positive (base {s_base:.3f}, tuned {s_tuned:.3f})."
        stream = [r for r in rows if r.component == "resid_post" and (_finite(r.restoration) or 0) >= 0.5]
        if lead == "restoration" and stream:
            text += (
                f" No single attention or MLP output restores the score; the residual stream restores "
                f"{stream[0].restoration:.0%} once blocks 0..{stream[0].layer} come from the base "
                f"({stream[0].site}): the damage is spread over those layers."
            )
        return (), text
    damaged = tuple(
        sorted(
            (i for i, v in enumerate(values) if v is not None and v >= config.threshold * peak),
            key=lambda i: -values[i],
        )
    )
    if lead == "restoration":
        best = max(
            (r for r in rows if r.component in ("attn", "mlp") and _finite(r.restoration) is not None),
            key=lambda r: r.restoration,
        )
        why = (
            f"patching {best.site} from the base restores {best.restoration:.0%} of the lost score "
            f"(base {s_base:.3f}, tuned {s_tuned:.3f})"
        )
    else:
        why = (
            f"the tuned model lost no score (base {s_base:.3f}, tuned {s_tuned:.3f}); the weights changed "
            f"most in layer {damaged[0]} ({peak:.3g} relative)"
        )
    agree, disagree = [], []
    labels = {
        "weight_change": "weight change",
        "cka_drop": "CKA drop",
        "probe_drop": "probe-accuracy drop",
        "restoration": "restoration",
    }
    for e in EVIDENCE:
        top = _top(evidence[e])
        if e == lead or top is None:
            continue
        text = f"{labels[e]} (largest at layer {top}: {evidence[e][top]:.3g})"
        (agree if top in damaged else disagree).append(text)
    where = f"layer{'s' if len(damaged) > 1 else ''} {', '.join(map(str, damaged))}"
    if lead == "restoration":
        parts = [f"Damage lies in {where}: {why}."]
    else:
        parts = [
            f"No damage for patching to localise: {why}; within {config.threshold:.0%} of that: {where}."
        ]
    if agree:
        parts.append(f"Agreeing: {'; '.join(agree)}.")
    if disagree:
        parts.append(f"Not agreeing: {'; '.join(disagree)}.")
    return damaged, " ".join(parts)


# --- the organism's scorers and probe task -------------------------------------------------------


def organism_scorer(
    task: Literal["fact_recall", "solve_rate"] = "fact_recall",
    zoo_dir: str | Path | None = None,
    split: str = "test_id",
    max_problems: int | None = None,
    max_new_tokens: int = 120,
) -> Scorer:
    """A scorer for organism models: greedy fact recall over every fact of the world (one
    batched generation), or the solve rate (valid trace and right answer) on a split.

    Args:
        task: ``fact_recall`` or ``solve_rate``.
        zoo_dir: the zoo whose world is used (default as in :func:`interp.organism.load_world`).
        split: problems for ``solve_rate``.
        max_problems: most problems (``None``: the whole split).
        max_new_tokens: generation budget per response for ``solve_rate``.

    Raises:
        ValueError: an unknown task; SpecError: no zoo.
    """
    from interp.organism.evaluate import check_responses, fact_recall, respond, solve_rate
    from interp.organism.store import load_world
    from interp.organism.traces import cot_prompt

    if task not in ("fact_recall", "solve_rate"):
        raise ValueError(f"task={task!r}; expected 'fact_recall' or 'solve_rate'")
    world, tok = load_world(zoo_dir)
    problems = world.split(split)[:max_problems]

    def score(model: Model) -> float:
        if task == "fact_recall":
            return fact_recall(model.module, tok, world)
        responses = respond(model.module, tok, [cot_prompt(s, g) for s, g in problems], max_new_tokens)
        return solve_rate(check_responses(world, problems, responses))

    score.__name__ = task if task == "fact_recall" else f"solve_rate_{split}"
    return score


def organism_probe_task(
    zoo_dir: str | Path | None = None, max_problems: int = 200, seed: int = 0
) -> ProbeTask:
    """Is this edge a fact? Labelled at the fact-recall position, in two contexts.

    Rows are a fact prompt ``F x : y`` and the start of a trace ``Q s g T s : y``; the label,
    read at ``y`` (where the model has just recalled, or been shown, the first neighbour), is
    1 when ``y`` is an out-neighbour of the node whose fact is being recalled, else 0. Each
    node / problem gets its true neighbours and as many seeded non-neighbours, so the classes
    are balanced. A binary label keeps the probe fit fast at any ``d_model`` (a probe over
    every node name would need ``n_nodes`` classes, one or two examples each).
    """
    import random

    from interp.organism.store import load_world
    from interp.organism.traces import cot_prompt, fact_prompt

    world, tok = load_world(zoo_dir)
    rng = random.Random(seed)
    contexts = [(fact_prompt(x), x) for x in range(world.n_nodes)]
    contexts += [
        (f"{cot_prompt(s, g)} n{s} :", s) for s, g in (world.split("train") + world.split("test_id"))
    ]
    contexts = contexts[: world.n_nodes + max_problems]
    rows, labels = [], []
    for text, node in contexts:
        good = world.neighbours(node)
        bad = rng.sample([v for v in range(world.n_nodes) if v not in good and v != node], len(good))
        for y, label in [(v, 1) for v in good] + [(v, 0) for v in bad]:
            rows.append(tuple(tok.encode(f"{text} n{y}")))
            labels.append(label)
    return ProbeTask(
        "edge is a fact (at the recalled neighbour)", tuple(rows), (-1,) * len(rows), tuple(labels)
    )
