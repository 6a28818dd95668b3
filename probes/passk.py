"""Unbiased pass@k from n samples per problem, and sampling them from a model (PAPERS.md §6).

``pass@k = E_problems[1 - C(n - c, k) / C(n, k)]`` (Chen et al. 2021; Yue et al. 2025), with
``n`` samples of which ``c`` are correct. The ratio of binomials is computed as the product
``prod_{i = n - c + 1}^{n} (1 - k / i)``, which never forms a large binomial.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from interp.models import Model, as_model
from interp.results import format_table, save_figure, save_json
from interp.sampling import check_sampling

log = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem with ``c`` correct out of ``n`` samples.

    Args:
        n: samples drawn.
        c: correct samples among them.
        k: the budget of attempts.

    Returns:
        ``1 - C(n - c, k) / C(n, k)``.

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.

    Example:
        >>> round(pass_at_k(10, 1, 1), 6), round(pass_at_k(4, 2, 2), 6)
        (0.1, 0.833333)
    """
    if not (0 <= c <= n) or n < 1:
        raise ValueError(f"n={n!r}, c={c!r}; expected n >= 1 and 0 <= c <= n")
    if not 1 <= k <= n:
        raise ValueError(f"k={k!r}; expected 1 <= k <= n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """pass@k averaged over problems.

    Example:
        >>> mean_pass_at_k([4, 4], [0, 4], 2)
        0.5
    """
    if len(ns) != len(cs) or not ns:
        raise ValueError(f"{len(ns)} sample counts and {len(cs)} correct counts; expected equal, non-zero")
    return sum(pass_at_k(n, c, k) for n, c in zip(ns, cs, strict=True)) / len(ns)


@dataclass(frozen=True)
class PassAtKResult:
    """Per-problem correct counts and pass@k at each budget.

    Attributes:
        n: samples per problem.
        correct: correct samples of each problem.
        ks: the budgets.
        meta: model, temperature, seed.
    """

    n: int
    correct: tuple[int, ...]
    ks: tuple[int, ...]
    meta: dict = field(default_factory=dict)

    @property
    def pass_at(self) -> dict[int, float]:
        return {k: mean_pass_at_k([self.n] * len(self.correct), list(self.correct), k) for k in self.ks}

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "ks": list(self.ks),
            "correct": list(self.correct),
            "pass_at_k": {str(k): v for k, v in self.pass_at.items()},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        return format_table(["k", "pass@k"], [[k, v] for k, v in self.pass_at.items()])

    def plot(self, path_or_ax=None):
        """pass@k against k (log axis)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        p = self.pass_at
        ax.plot(list(p), list(p.values()), marker="o", label=self.meta.get("model", "model"))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k")
        ax.legend()
        if path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return fig


def generate_continuations(
    model: Model,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    stop_id: int | None = None,
    forbid: list[int] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    *,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> list[list[int]]:
    """Batched KV-cache generation through :func:`interp.generation.generate`.

    Prompts of different lengths share left-padded batches; the pad is the tokenizer's own
    (:func:`interp.generation.default_pad_id`), never a made-up 0.

    Raises:
        GenerationError: a sampling setting out of range (``temperature``, ``top_k``, ``top_p``).
    """
    from interp.generation import generate

    return generate(
        model,
        prompts,
        max_new_tokens,
        temperature=temperature,
        stop_id=stop_id,
        forbid=forbid,
        generator=generator,
        batch_size=batch_size,
        top_k=top_k,
        top_p=top_p,
    )


def sample_pass_at_k(
    model: "Model | nn.Module",
    prompts: Sequence[str | Sequence[int]],
    is_correct: Callable[[int, list[int]], bool],
    n: int,
    ks: Sequence[int],
    temperature: float = 1.0,
    max_new_tokens: int = 120,
    seed: int = 0,
    stop_id: int | None = None,
    batch_size: int = 256,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> PassAtKResult:
    """Sample ``n`` continuations per prompt and estimate pass@k for every ``k`` in ``ks``.

    Args:
        model: the model to sample.
        prompts: token ids or texts.
        is_correct: ``is_correct(prompt_index, continuation_ids) -> bool``.
        n: samples per prompt.
        ks: budgets, each in ``1..n``.
        temperature: sampling temperature (> 0 for distinct samples).
        max_new_tokens: generation budget per sample.
        seed: seed of the sampling generator.
        stop_id: a token that ends a sample (e.g. the organism's ``E``).
        batch_size: rows generated together.
        top_k: sample only among the ``top_k`` most likely tokens (``None``: all).
        top_p: sample only from the nucleus of probability mass ``top_p`` (1: all); see
            :func:`interp.generation.sample_next`.

    Returns:
        :class:`PassAtKResult`.

    Raises:
        ValueError: ``n < 1`` or a ``k`` outside ``1..n``.
        GenerationError: ``temperature < 0``, ``top_k < 1`` or ``top_p`` outside ``(0, 1]``
            (refused before any sampling).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> always = lambda i, ids: True
        >>> r = sample_pass_at_k(HookedTransformer(cfg), [[1, 2]], always, n=4, ks=[1, 4], max_new_tokens=2)
        >>> r.pass_at
        {1: 1.0, 4: 1.0}
    """
    if n < 1:
        raise ValueError(f"n={n!r}; expected at least one sample per prompt")
    bad = [k for k in ks if not 1 <= k <= n]
    if bad or not ks:
        raise ValueError(f"ks={list(ks)!r}; expected a non-empty list of budgets in 1..n={n}")
    check_sampling(temperature, top_k, top_p)
    model = as_model(model)
    ids = [model.encode(p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    rows = [p for p in ids for _ in range(n)]
    gen = torch.Generator().manual_seed(seed)
    outs = generate_continuations(
        model, rows, max_new_tokens, temperature, stop_id, None, gen, batch_size, top_k=top_k, top_p=top_p
    )
    correct = [sum(bool(is_correct(i, outs[i * n + j])) for j in range(n)) for i in range(len(ids))]
    meta = {
        "model": model.spec,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
    }
    return PassAtKResult(n, tuple(correct), tuple(int(k) for k in ks), meta)
