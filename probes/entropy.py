"""Token entropy of responses, forking tokens, and where training moved the distributions (PAPERS.md §7).

``H_t = -sum_j p_tj log p_tj`` with ``p_t = softmax(z_t / T)``, the distribution the response's
token ``t`` is drawn from (response tokens only; the prompt is masked out). Forking tokens are
those with ``H_t`` at or above the ``1 - top_fraction`` quantile of all response tokens of the
batch (Wang et al. 2025: the top 20%). :func:`entropy_profile` also says where they fall, by
token type and by step of the trace; :func:`distribution_shift` measures, per token, how far a
tuned model's next-token distribution moved from the base model's, against the base model's
entropy there (does training move the high-entropy tokens?).
"""

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.models import Model, as_model
from interp.results import format_table, save_figure, save_json
from probes.scoring import entropy_of, iter_logprobs

log = logging.getLogger(__name__)

ORGANISM_MARKERS = ("WAIT", "CHECK", "OK", "BAD", "BACK")
_NODE = re.compile(r"n\d+")


def organism_token_type(word: str) -> str:
    """Type of an organism word: ``node``, ``digit``, a marker or structure word itself.

    Example:
        >>> [organism_token_type(w) for w in ["n17", "3", "WAIT", ">", ";", "A"]]
        ['node', 'digit', 'WAIT', '>', ';', 'A']
    """
    if _NODE.fullmatch(word):
        return "node"
    if word.isdigit():
        return "digit"
    return word


@dataclass(frozen=True)
class EntropyConfig:
    """Settings of the entropy measurements.

    Args:
        top_fraction: share of highest-entropy tokens called forking (0.2 in the paper).
        temperature: ``T`` of ``softmax(z / T)``.
        step_separator: the word that ends a step (``;`` for the organism); ``None``: no steps.
        batch_size: sequences per forward pass.
    """

    top_fraction: float = 0.2
    temperature: float = 1.0
    step_separator: str | None = ";"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0.0 < self.top_fraction < 1.0:
            raise ValueError(f"top_fraction={self.top_fraction!r}; expected a share in (0, 1), e.g. 0.2")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r}; expected > 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected an int >= 1")


def _group_stats(keys: list, H: Tensor, fork: Tensor) -> dict:
    out = {}
    n_fork = max(int(fork.sum()), 1)
    for key in sorted(set(keys), key=lambda k: (isinstance(k, str), k)):
        m = torch.tensor([k == key for k in keys])
        out[key] = {
            "count": int(m.sum()),
            "forking": int(fork[m].sum()),
            "forking_rate": float(fork[m].float().mean()),
            "share_of_forking": float(fork[m].sum()) / n_fork,
            "mean_entropy": float(H[m].mean()),
        }
    return out


@dataclass(frozen=True)
class EntropyResult:
    """Per-token entropy of responses and the forking tokens among them.

    Attributes:
        entropy: per response, the entropy (nats) at each response token.
        words: per response, the decoded tokens.
        threshold: the forking threshold (the ``1 - top_fraction`` quantile).
        by_type: per token type: count, forking count, forking rate, share of all forking
            tokens, mean entropy.
        by_step: the same per step index of the trace (tokens after ``k`` separators).
        meta: model, config.
    """

    entropy: tuple[Tensor, ...]
    words: tuple[tuple[str, ...], ...]
    threshold: float
    by_type: dict
    by_step: dict
    meta: dict = field(default_factory=dict)

    @property
    def forking_share(self) -> float:
        """Share of response tokens at or above the threshold."""
        H = torch.cat(self.entropy)
        return float((H >= self.threshold).float().mean())

    @property
    def mean_entropy(self) -> float:
        return float(torch.cat(self.entropy).mean())

    def forking_mask(self) -> tuple[Tensor, ...]:
        return tuple(h >= self.threshold for h in self.entropy)

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "forking_share": self.forking_share,
            "mean_entropy": self.mean_entropy,
            "n_tokens": int(sum(len(h) for h in self.entropy)),
            "by_type": self.by_type,
            "by_step": {str(k): v for k, v in self.by_step.items()},
            "entropy": [h.tolist() for h in self.entropy],
            "words": [list(w) for w in self.words],
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        rows = [
            [k, v["count"], v["forking"], v["forking_rate"], v["share_of_forking"], v["mean_entropy"]]
            for k, v in sorted(self.by_type.items(), key=lambda kv: -kv[1]["forking"])
        ]
        head = (
            f"forking threshold {self.threshold:.3f} nats, forking share {self.forking_share:.3f}, "
            f"mean entropy {self.mean_entropy:.3f}\n"
        )
        return head + format_table(
            ["type", "tokens", "forking", "fork rate", "share of forks", "mean H"], rows
        )

    def plot(self, path_or_ax=None):
        """Entropy histogram with the threshold, and the forking rate per token type."""
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
        H = torch.cat(self.entropy).numpy()
        a1.hist(H, bins=40, color="tab:blue")
        a1.axvline(self.threshold, color="tab:red", ls="--", label="forking threshold")
        a1.set_xlabel("token entropy (nats)")
        a1.set_ylabel("tokens")
        a1.legend()
        types = sorted(self.by_type, key=lambda k: -self.by_type[k]["forking_rate"])[:20]
        a2.bar(range(len(types)), [self.by_type[t]["forking_rate"] for t in types])
        a2.set_xticks(range(len(types)), types, rotation=60, ha="right")
        a2.set_ylabel("share of tokens forking")
        if path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return fig


def _prepare(model: Model, prompts, responses) -> tuple[list[list[int]], list[int]]:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; expected equal counts")
    if not prompts:
        raise ValueError("no sequences given; expected at least one (prompt, response) pair")
    seqs, plens = [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        pi = model.encode(p) if isinstance(p, str) else [int(t) for t in p]
        ri = model.encode(r) if isinstance(r, str) else [int(t) for t in r]
        if not pi:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        if not ri:
            raise ValueError(f"response {i} is empty; expected at least one response token")
        seqs.append(pi + ri)
        plens.append(len(pi))
    return seqs, plens


def _steps(words: Sequence[str], sep: str | None) -> list[int]:
    out, k = [], 0
    for w in words:
        out.append(k)
        if sep is not None and w == sep:
            k += 1
    return out


def entropy_profile(
    model: "Model | nn.Module",
    prompts: Sequence[str | Sequence[int]],
    responses: Sequence[str | Sequence[int]],
    config: EntropyConfig = EntropyConfig(),
    token_type: Callable[[str], str] = organism_token_type,
    progress: bool = False,
) -> EntropyResult:
    """Entropy at every response token, the forking tokens, and where they fall.

    Args:
        model: the model whose next-token distributions are measured.
        prompts: token ids or texts (masked out).
        responses: the given or generated continuations (token ids or texts).
        config: forking share, temperature, step separator, batch size.
        token_type: maps a decoded token to its type (default: the organism's types).
        progress: show a progress bar.

    Returns:
        :class:`EntropyResult`.

    Raises:
        ValueError: mismatched or empty inputs, or sequences longer than the context.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> cfg = HookedTransformerConfig(
        ...     n_layers=1, d_model=8, n_ctx=16, d_head=4, d_vocab=35, act_fn="relu"
        ... )
        >>> m = Model(HookedTransformer(cfg), WordTokenizer(organism_vocab(4)), "tiny")
        >>> r = entropy_profile(m, ["Q n0 n2 T"] * 2, ["n0 : n1 > n1 ;", "A n0 n2 E"])
        >>> sum(v["count"] for v in r.by_type.values())
        11
    """
    model = as_model(model)
    seqs, plens = _prepare(model, prompts, responses)
    ents: list[Tensor] = [torch.empty(0)] * len(seqs)
    for idx, logp, lengths in iter_logprobs(model, seqs, config.batch_size, config.temperature, progress):
        H = entropy_of(logp[:, :-1])
        for r, i in enumerate(idx):
            ents[i] = H[r, plens[i] - 1 : lengths[r] - 1].clone()
    words = tuple(
        tuple(model.decode([t]).strip() if model.tokenizer is not None else str(t) for t in s[p:])
        for s, p in zip(seqs, plens, strict=True)
    )
    allH = torch.cat(ents)
    threshold = float(torch.quantile(allH.double(), 1.0 - config.top_fraction))
    fork = allH >= threshold
    types = [token_type(w) for ws in words for w in ws]
    steps = [k for ws in words for k in _steps(ws, config.step_separator)]
    meta = {
        "model": model.spec,
        "top_fraction": config.top_fraction,
        "temperature": config.temperature,
        "step_separator": config.step_separator,
        "n_responses": len(seqs),
    }
    return EntropyResult(
        tuple(ents), words, threshold, _group_stats(types, allH, fork), _group_stats(steps, allH, fork), meta
    )


def _divergence(
    logp_tuned: Float[Tensor, "... d_vocab"], logp_base: Float[Tensor, "... d_vocab"], measure: str
) -> Float[Tensor, "..."]:
    if measure == "kl":  # KL(tuned || base)
        return (logp_tuned.exp() * (logp_tuned - logp_base)).sum(-1)
    m = torch.logsumexp(torch.stack([logp_tuned, logp_base]), 0) - math.log(2.0)
    kl_t = (logp_tuned.exp() * (logp_tuned - m)).sum(-1)
    kl_b = (logp_base.exp() * (logp_base - m)).sum(-1)
    return 0.5 * (kl_t + kl_b)


def _rank(x: Tensor) -> Tensor:
    r = torch.empty_like(x)
    r[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
    return r


def _pearson(x: Tensor, y: Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else math.nan


@dataclass(frozen=True)
class ShiftResult:
    """Per response token: the base model's entropy and the tuned model's divergence from it.

    Attributes:
        base_entropy: per response, the base model's entropy at each response token.
        shift: per response, ``KL(tuned || base)`` (or Jensen-Shannon) at each token.
        measure: ``"kl"`` or ``"js"``.
        threshold: the base-entropy forking threshold.
        meta: models and config.
    """

    base_entropy: tuple[Tensor, ...]
    shift: tuple[Tensor, ...]
    measure: str
    threshold: float
    meta: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        H = torch.cat(self.base_entropy).double()
        D = torch.cat(self.shift).double()
        high = H >= self.threshold
        total = float(D.sum())
        return {
            "pearson": _pearson(H, D),
            "spearman": _pearson(_rank(H), _rank(D)),
            "share_of_shift_on_high_entropy": float(D[high].sum()) / total if total > 0 else math.nan,
            "share_of_tokens_high_entropy": float(high.double().mean()),
            "mean_shift_high": float(D[high].mean()) if high.any() else math.nan,
            "mean_shift_low": float(D[~high].mean()) if (~high).any() else math.nan,
        }

    def to_dict(self) -> dict:
        return {
            "measure": self.measure,
            "threshold": self.threshold,
            **self.summary(),
            "base_entropy": [h.tolist() for h in self.base_entropy],
            "shift": [d.tolist() for d in self.shift],
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        return format_table(["statistic", "value"], [[k, v] for k, v in self.summary().items()])

    def plot(self, path_or_ax=None):
        """Scatter of the divergence against the base model's entropy, threshold marked."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(torch.cat(self.base_entropy), torch.cat(self.shift), s=4, alpha=0.4)
        ax.axvline(self.threshold, color="tab:red", ls="--", label="base forking threshold")
        ax.set_xlabel("base model entropy (nats)")
        ax.set_ylabel("KL(tuned || base)" if self.measure == "kl" else "JS(tuned, base)")
        ax.legend()
        if path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return fig


def distribution_shift(
    base: "Model | nn.Module",
    tuned: "Model | nn.Module",
    prompts: Sequence[str | Sequence[int]],
    responses: Sequence[str | Sequence[int]],
    measure: str = "kl",
    config: EntropyConfig = EntropyConfig(),
    progress: bool = False,
) -> ShiftResult:
    """How far ``tuned`` moved from ``base`` at each response token, against base entropy.

    ``kl`` is ``KL(tuned || base) = sum p_tuned (log p_tuned - log p_base)``, the direction in
    which RL's KL penalty is usually written; ``js`` is the symmetric, bounded Jensen-Shannon
    divergence (``<= log 2``). Both models must share the tokenizer and vocabulary.

    Args:
        base: the model before training.
        tuned: the model after training.
        prompts: token ids or texts (masked out).
        responses: continuations (token ids or texts), usually sampled from ``tuned``.
        measure: ``"kl"`` or ``"js"``.
        config: forking share (for the high-entropy set), temperature, batch size.
        progress: show a progress bar.

    Returns:
        :class:`ShiftResult`; its ``summary()`` has the Pearson and Spearman correlations and
        the share of total shift that falls on base-high-entropy tokens.

    Raises:
        ValueError: an unknown measure, different vocabulary sizes, or bad sequences.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(
        ...     n_layers=1, d_model=8, n_ctx=16, d_head=4, d_vocab=6, act_fn="relu"
        ... )
        >>> m = HookedTransformer(cfg)
        >>> r = distribution_shift(m, m, [[1, 2]], [[3, 4, 5]])
        >>> float(torch.cat(r.shift).abs().max()) < 1e-5
        True
    """
    if measure not in ("kl", "js"):
        raise ValueError(f"measure={measure!r}; expected 'kl' or 'js'")
    base, tuned = as_model(base), as_model(tuned)
    if base.d_vocab != tuned.d_vocab:
        raise ValueError(
            f"base has d_vocab={base.d_vocab} but tuned has {tuned.d_vocab}; expected the same vocabulary"
        )
    seqs, plens = _prepare(tuned, prompts, responses)
    H_out: list[Tensor] = [torch.empty(0)] * len(seqs)
    D_out: list[Tensor] = [torch.empty(0)] * len(seqs)
    T, bs = config.temperature, config.batch_size
    pairs = zip(iter_logprobs(base, seqs, bs, T, progress), iter_logprobs(tuned, seqs, bs, T), strict=True)
    for (idx, lp_base, lengths), (_, lp_tuned, _) in pairs:
        H = entropy_of(lp_base[:, :-1])
        D = _divergence(lp_tuned[:, :-1], lp_base[:, :-1], measure).clamp_min(0.0)
        for r, i in enumerate(idx):
            sl = slice(plens[i] - 1, lengths[r] - 1)
            H_out[i], D_out[i] = H[r, sl].clone(), D[r, sl].clone()
    threshold = float(torch.quantile(torch.cat(H_out).double(), 1.0 - config.top_fraction))
    meta = {"base": base.spec, "tuned": tuned.spec, "top_fraction": config.top_fraction, "temperature": T}
    return ShiftResult(tuple(H_out), tuple(D_out), measure, threshold, meta)
