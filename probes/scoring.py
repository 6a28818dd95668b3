"""Batched likelihood scoring: continuations given prefixes, and per-token log-probs and entropy.

Sequences of a batch are right-padded into one ``[batch, pos]`` tensor and run in ONE forward
pass. A causal model's logits at a real position never see the padding after it, and every
row starts at position 0, so absolute and rotary positions stay right without an attention
mask; padded positions are simply left out of every sum. Rows are sorted by length before
batching (less padding) and results are returned in the caller's order.

:func:`score_shared_prefixes` scores many cuts of one context (every prefix of a trace, each
followed by the same answer) with the context run once: on a ``HookedTransformer`` with learned
positions, hooks (:mod:`interp.hooks`) set each answer copy's positions and restrict its
attention, and short contexts share a row; other models fall back to the padded pairs.
"""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.hooks import hooks
from interp.models import Model, load_model
from interp.results import format_table

log = logging.getLogger(__name__)

Tokens = Sequence[int]
# Rows of the shared-prefix path are packed to about this many tokens: attention's [pos, pos]
# work (scores, masks, softmax) grows with the square of the row, the rest linearly.
ROW_TOKENS = 128


@dataclass(frozen=True)
class ContinuationScores:
    """Negative log-likelihoods of continuations given their prefixes (natural log).

    Attributes:
        nll: summed NLL of each continuation's tokens.
        n_tokens: tokens in each continuation.
        token_nll: per-token NLL of each continuation.
        sequence_nll: summed NLL of every predicted token of prefix + continuation (all but the
            first token), for perplexity-style scores of the whole string.
        sequence_tokens: number of predicted tokens of prefix + continuation.
    """

    nll: Float[Tensor, " batch"]
    n_tokens: Int[Tensor, " batch"]
    token_nll: tuple[Tensor, ...]
    sequence_nll: Float[Tensor, " batch"]
    sequence_tokens: Int[Tensor, " batch"]

    @property
    def mean_nll(self) -> Float[Tensor, " batch"]:
        """Mean NLL per continuation token."""
        return self.nll / self.n_tokens

    def to_dict(self) -> dict:
        return {
            "nll": self.nll.tolist(),
            "n_tokens": self.n_tokens.tolist(),
            "sequence_nll": self.sequence_nll.tolist(),
            "sequence_tokens": self.sequence_tokens.tolist(),
        }

    def __str__(self) -> str:
        rows = [[i, int(n), float(v)] for i, (n, v) in enumerate(zip(self.n_tokens, self.nll, strict=True))]
        return format_table(["pair", "tokens", "nll"], rows)


@dataclass(frozen=True)
class TokenScores:
    """Per-token log-probabilities and entropies of given sequences.

    ``logprobs[i][t]`` is ``log p(seq[t+1] | seq[:t+1])`` and ``entropy[i][t]`` the entropy of
    that same next-token distribution (natural log), so each has ``len(seq) - 1`` entries.
    """

    logprobs: tuple[Tensor, ...]
    entropy: tuple[Tensor, ...]
    temperature: float

    def to_dict(self) -> dict:
        return {
            "logprobs": [x.tolist() for x in self.logprobs],
            "entropy": [x.tolist() for x in self.entropy],
            "temperature": self.temperature,
        }


def encode_pair(model: Model, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prefix`` and of ``continuation`` as it is tokenised after that prefix.

    The pair is encoded jointly so that the continuation's tokens are those of the whole
    string; when the joint encoding does not start with the prefix's own encoding (a merge
    across the boundary: "...is Pa" + "ris" where "Paris" is one token), the continuation is
    encoded alone as it appears inside a sequence (:meth:`Model.encode` with
    ``add_special_tokens=False``), so it never carries a BOS in the middle of the sequence.

    Example:
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=35, act_fn="relu")
        >>> m = Model(HookedTransformer(cfg), WordTokenizer(organism_vocab(4)), "tiny")
        >>> encode_pair(m, "Q n1 n3 A", " n1 n3 E")
        ([2, 32, 34, 6], [32, 34, 7])
    """
    p = model.encode(prefix)
    whole = model.encode(prefix + continuation)
    if whole[: len(p)] == p and len(whole) > len(p):
        return p, whole[len(p) :]
    return p, model.encode(continuation, add_special_tokens=False)


def _as_ids(model: Model, seqs: Sequence[str | Tokens], what: str) -> list[list[int]]:
    out = []
    for i, s in enumerate(seqs):
        ids = model.encode(s) if isinstance(s, str) else [int(t) for t in s]
        if not ids:
            raise ValueError(f"{what} {i} is empty; every {what} needs at least one token")
        out.append(ids)
    return out


def _check_lengths(model: Model, seqs: list[list[int]]) -> None:
    longest = max(len(s) for s in seqs)
    if longest > model.n_ctx:
        i = max(range(len(seqs)), key=lambda k: len(seqs[k]))
        raise ValueError(f"sequence {i} has {longest} tokens; the model accepts at most n_ctx={model.n_ctx}")


def iter_logprobs(
    model: Model,
    seqs: list[list[int]],
    batch_size: int = 32,
    temperature: float = 1.0,
    progress: bool = False,
) -> Iterator[tuple[list[int], Float[Tensor, "batch pos d_vocab"], list[int]]]:
    """Yield ``(indices, log_softmax(logits / T), lengths)`` per right-padded batch.

    One forward pass per batch; rows are sorted by length, ``indices`` says which input each
    row is. Runs under ``torch.inference_mode``; results are float32 on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}; expected > 0")
    _check_lengths(model, seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    pad = model.pad_token_id
    starts = range(0, len(order), batch_size)
    for k in tqdm(starts, desc="scoring", disable=not progress, leave=False):
        idx = order[k : k + batch_size]
        lengths = [len(seqs[i]) for i in idx]
        toks = torch.full((len(idx), max(lengths)), pad, dtype=torch.long)
        for r, i in enumerate(idx):
            toks[r, : lengths[r]] = torch.tensor(seqs[i], dtype=torch.long)
        with torch.inference_mode():
            logits = model.forward(toks)
            logp = torch.log_softmax(logits.float() / temperature, dim=-1).cpu()
        yield idx, logp, lengths


def _resolve(model) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def score_continuations(
    model: "Model | str | nn.Module",
    prefixes: Sequence[str | Tokens],
    continuations: Sequence[str | Tokens],
    batch_size: int = 32,
    progress: bool = False,
) -> ContinuationScores:
    """NLL of each continuation given its prefix, one forward pass per batch of pairs.

    Args:
        model: a loaded :class:`interp.models.Model` (or a spec / TransformerLens module).
        prefixes: token ids or texts; every prefix needs at least one token.
        continuations: token ids or texts (a text is tokenised after its prefix, see
            :func:`encode_pair`); one per prefix, non-empty.
        batch_size: pairs per forward pass.
        progress: show a progress bar.

    Returns:
        :class:`ContinuationScores` in the order of the inputs.

    Raises:
        ValueError: different numbers of prefixes and continuations, an empty prefix or
            continuation, or a pair longer than the model's context.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> s = score_continuations(HookedTransformer(cfg), [[1, 2], [3]], [[4], [0, 1]])
        >>> s.n_tokens.tolist(), bool((s.nll > 0).all())
        ([1, 2], True)
    """
    model = _resolve(model)
    if len(prefixes) != len(continuations):
        raise ValueError(
            f"{len(prefixes)} prefixes but {len(continuations)} continuations; expected equal counts"
        )
    pre: list[list[int]] = []
    cont: list[list[int]] = []
    for i, (p, c) in enumerate(zip(prefixes, continuations, strict=True)):
        if isinstance(p, str) and isinstance(c, str):
            pi, ci = encode_pair(model, p, c)
        else:
            pi, ci = _as_ids(model, [p], "prefix")[0], _as_ids(model, [c], "continuation")[0]
        if not pi:
            raise ValueError(f"prefix {i} is empty; every prefix needs at least one token")
        if not ci:
            raise ValueError(f"continuation {i} is empty; every continuation needs at least one token")
        pre.append(pi)
        cont.append(ci)
    seqs = [p + c for p, c in zip(pre, cont, strict=True)]
    n = len(seqs)
    nll = torch.zeros(n, dtype=torch.float64)
    seq_nll = torch.zeros(n, dtype=torch.float64)
    token_nll: list[Tensor] = [torch.empty(0)] * n
    for idx, logp, lengths in iter_logprobs(model, seqs, batch_size, progress=progress):
        B, T = logp.shape[:2]
        targets = torch.zeros(B, T - 1, dtype=torch.long)
        for r, i in enumerate(idx):
            targets[r, : lengths[r] - 1] = torch.tensor(seqs[i][1:], dtype=torch.long)
        tok_nll = -logp[:, :-1].gather(-1, targets[..., None])[..., 0]  # [batch, pos-1]
        for r, i in enumerate(idx):
            start = len(pre[i]) - 1  # logits at the prefix's last token predict the continuation
            tn = tok_nll[r, start : lengths[r] - 1]
            token_nll[i] = tn.clone()
            nll[i] = tn.double().sum()
            seq_nll[i] = tok_nll[r, : lengths[r] - 1].double().sum()
    return ContinuationScores(
        nll=nll,
        n_tokens=torch.tensor([len(c) for c in cont]),
        token_nll=tuple(token_nll),
        sequence_nll=seq_nll,
        sequence_tokens=torch.tensor([len(s) - 1 for s in seqs]),
    )


def entropy_of(logp: Float[Tensor, "... d_vocab"]) -> Float[Tensor, "..."]:
    """Entropy ``-sum p log p`` (nats) of log-probabilities along the last axis.

    Example:
        >>> round(float(entropy_of(torch.log(torch.tensor([0.5, 0.5])))), 4)
        0.6931
    """
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)


def token_logprobs(
    model: "Model | str | nn.Module",
    sequences: Sequence[str | Tokens],
    temperature: float = 1.0,
    batch_size: int = 32,
    progress: bool = False,
) -> TokenScores:
    """Log-probability of every next token of each sequence, and the entropy of its distribution.

    Args:
        model: a loaded model (or spec / module).
        sequences: token ids or texts, at least two tokens each.
        temperature: ``p = softmax(logits / T)``.
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Returns:
        :class:`TokenScores`, ``len(seq) - 1`` values per sequence.

    Raises:
        ValueError: a sequence shorter than two tokens or longer than the context.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> s = token_logprobs(HookedTransformer(cfg), [[1, 2, 3], [4, 0]])
        >>> [len(x) for x in s.logprobs], bool((s.entropy[0] <= torch.log(torch.tensor(5.0)) + 1e-5).all())
        ([2, 1], True)
    """
    model = _resolve(model)
    seqs = _as_ids(model, sequences, "sequence")
    short = [i for i, s in enumerate(seqs) if len(s) < 2]
    if short:
        raise ValueError(f"sequences {short[:5]} have fewer than two tokens; nothing to predict")
    lps: list[Tensor] = [torch.empty(0)] * len(seqs)
    ents: list[Tensor] = [torch.empty(0)] * len(seqs)
    for idx, logp, lengths in iter_logprobs(model, seqs, batch_size, temperature, progress):
        ent = entropy_of(logp[:, :-1])
        for r, i in enumerate(idx):
            L = lengths[r] - 1
            tgt = torch.tensor(seqs[i][1:], dtype=torch.long)
            lps[i] = logp[r, :L].gather(-1, tgt[:, None])[:, 0].clone()
            ents[i] = ent[r, :L].clone()
    return TokenScores(tuple(lps), tuple(ents), float(temperature))


def _packable(model: Model) -> bool:
    """A HookedTransformer with learned absolute positions: positions and masks can be set by hooks."""
    from transformer_lens import HookedTransformer

    cfg = model.cfg
    return (
        isinstance(model.module, HookedTransformer)
        and getattr(cfg, "positional_embedding_type", None) == "standard"
        and getattr(cfg, "attention_dir", "causal") == "causal"
        and "hook_pos_embed" in model.module.hook_dict
    )


def _pack_rows(
    contexts: list[list[int]], cuts: list[list[int]], tails: list[list[int]], n_ctx: int
) -> list[tuple[int, list[int], list[int]]]:
    """Rows ``(context index, cuts, output indices)``, each ``ctx[:max cut] + one tail per cut`` <= n_ctx."""
    rows, k = [], 0
    for j, (cs, tail) in enumerate(zip(cuts, tails, strict=True)):
        cur, idx = [], []
        for c in cs:
            if cur and max(*cur, c) + (len(cur) + 1) * len(tail) > n_ctx:
                rows.append((j, cur, idx))
                cur, idx = [], []
            cur.append(c)
            idx.append(k)
            k += 1
        if cur:
            rows.append((j, cur, idx))
    return rows


def _packed_log_softmax(
    model: Model, toks: Tensor, pos_ids: Tensor, blocked: Tensor
) -> Float[Tensor, "batch pos d_vocab"]:
    """One forward pass with positions ``pos_ids`` and attention ``blocked`` [batch, 1, q, k] set by hooks."""
    W_pos = model.module.W_pos

    def positions(act: Tensor, name: str) -> Tensor:
        return W_pos[pos_ids.to(W_pos.device)].to(act.dtype)

    def mask(act: Tensor, name: str) -> Tensor:
        return act.masked_fill(blocked.to(act.device), float("-inf"))

    fns = {"hook_pos_embed": positions, "blocks.*.attn.hook_attn_scores": mask}
    with torch.inference_mode(), hooks(model, fns):
        return torch.log_softmax(model.forward(toks).float(), -1).cpu()


def _first_fit(units: list[tuple], capacity: int) -> list[list[tuple]]:
    """Pack units (last field: length) into rows of at most ``capacity`` tokens, longest first."""
    rows: list[list[tuple]] = []
    free: list[int] = []
    for u in sorted(units, key=lambda u: -u[-1]):
        for r, f in enumerate(free):
            if u[-1] <= f:
                rows[r].append(u)
                free[r] -= u[-1]
                break
        else:
            rows.append([u])
            free.append(capacity - u[-1])
    return rows


def score_shared_prefixes(
    model: "Model | str | nn.Module",
    contexts: Sequence[Tokens],
    cuts: Sequence[Sequence[int]],
    tails: Sequence[Tokens],
    n_scored: Sequence[int],
    batch_size: int = 32,
    progress: bool = False,
) -> ContinuationScores:
    """Score ``contexts[j][:c] + tails[j]`` for every cut ``c`` of every context, sharing the context.

    The pair for ``(j, c)`` has prefix ``contexts[j][:c] + tails[j][:-n_scored[j]]`` and
    continuation ``tails[j][-n_scored[j]:]``; results come in ``(j, c)`` order, exactly as
    :func:`score_continuations` on those pairs would give them. On a ``HookedTransformer`` with
    learned absolute positions the context of ``j`` is run once and followed by one copy of the
    tail per cut: hooks set each copy's positions to ``c, c+1, ...`` and mask its attention to
    the context's first ``c`` tokens and itself, so one row scores every cut (the information
    gain of a trace costs about one pass over the trace instead of one per step). Other models
    fall back to :func:`score_continuations`.

    Args:
        model: a loaded model (or spec / module).
        contexts: token ids of each full context (e.g. question and every step).
        cuts: per context, the prefix lengths to score after (each in ``1..len(context)``).
        tails: per context, the tokens appended after each cut (e.g. marker and answer).
        n_scored: per context, how many final tail tokens form the scored continuation.
        batch_size: rows per forward pass.
        progress: show a progress bar.

    Returns:
        :class:`ContinuationScores`, one entry per ``(context, cut)``.

    Raises:
        ValueError: mismatched lengths, a cut outside ``1..len(context)``, or ``n_scored``
            outside ``1..len(tail)``.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, d_vocab=5, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> a = score_shared_prefixes(m, [[1, 2, 3]], [[1, 3]], [[4, 0]], [1])
        >>> b = score_continuations(m, [[1, 4], [1, 2, 3, 4]], [[0], [0]])
        >>> bool(torch.allclose(a.nll, b.nll, atol=1e-5))
        True
    """
    model = _resolve(model)
    if not (len(contexts) == len(cuts) == len(tails) == len(n_scored)):
        raise ValueError(
            f"got {len(contexts)} contexts, {len(cuts)} cut lists, {len(tails)} tails and "
            f"{len(n_scored)} n_scored; expected one of each per context"
        )
    ctxs = [[int(t) for t in c] for c in contexts]
    tls = [[int(t) for t in t_] for t_ in tails]
    for j, (c, cs, t, n) in enumerate(zip(ctxs, cuts, tls, n_scored, strict=True)):
        if not cs or any(not 1 <= k <= len(c) for k in cs):
            raise ValueError(
                f"cuts {list(cs)} of context {j} (length {len(c)}); expected cuts in 1..{len(c)}"
            )
        if not 1 <= n <= len(t):
            raise ValueError(f"n_scored={n} for tail {j} of length {len(t)}; expected 1..{len(t)}")
    if not _packable(model):
        pre = [
            c[:k] + t[: len(t) - n] for c, cs, t, n in zip(ctxs, cuts, tls, n_scored, strict=True) for k in cs
        ]
        cont = [t[len(t) - n :] for cs, t, n in zip(cuts, tls, n_scored, strict=True) for _ in cs]
        return score_continuations(model, pre, cont, batch_size, progress)
    _check_lengths(model, [c[: max(cs)] + t for c, cs, t in zip(ctxs, cuts, tls, strict=True)])
    cap = min(model.n_ctx, ROW_TOKENS)
    rows = _pack_rows(ctxs, [list(cs) for cs in cuts], tls, cap)
    total = sum(len(cs) for cs in cuts)
    nll = torch.zeros(total, dtype=torch.float64)
    seq_nll = torch.zeros(total, dtype=torch.float64)
    n_tokens = torch.zeros(total, dtype=torch.long)
    seq_tokens = torch.zeros(total, dtype=torch.long)
    token_nll: list[Tensor] = [torch.empty(0)] * total
    units = [(j, cs, idx, max(cs) + len(cs) * len(tls[j])) for j, cs, idx in rows]
    bins = _first_fit(units, max(cap, *(u[3] for u in units)))
    pad = model.pad_token_id
    for b in tqdm(range(0, len(bins), batch_size), desc="scoring", disable=not progress, leave=False):
        batch = bins[b : b + batch_size]
        T = max(sum(u[3] for u in row) for row in batch)
        B = len(batch)
        toks = torch.full((B, T), pad, dtype=torch.long)
        pos_ids = torch.zeros(B, T, dtype=torch.long)
        seg = torch.full((B, T), -1, dtype=torch.long)  # -1: padding (a causal segment of its own)
        blk = torch.full((B, T), -1, dtype=torch.long)  # -1: context token, k >= 0: the k-th tail copy
        local = torch.zeros(B, T, dtype=torch.long)  # index within the unit's context
        cut_of = torch.zeros(B, T, dtype=torch.long)
        for r, row in enumerate(batch):
            o = 0
            for u, (j, cs, _, n) in enumerate(row):
                L, t = max(cs), tls[j]
                toks[r, o : o + n] = torch.tensor(ctxs[j][:L] + t * len(cs))
                pos_ids[r, o : o + n] = torch.tensor(
                    list(range(L)) + [c + i for c in cs for i in range(len(t))]
                )
                seg[r, o : o + n] = u
                blk[r, o + L : o + n] = torch.arange(len(cs)).repeat_interleave(len(t))
                local[r, o : o + L] = torch.arange(L)
                cut_of[r, o + L : o + n] = torch.tensor(cs).repeat_interleave(len(t))
                o += n
        same = seg[:, :, None] == seg[:, None, :]
        q_blk, k_blk = blk[:, :, None], blk[:, None, :]
        # within a unit: context causal; a tail copy sees the context's first `cut` tokens and itself
        sees = torch.where(
            q_blk >= 0,
            ((k_blk == -1) & (local[:, None, :] < cut_of[:, :, None])) | (k_blk == q_blk),
            k_blk == -1,
        )
        allowed = same & (sees | (seg[:, :, None] == -1))
        logp = _packed_log_softmax(model, toks, pos_ids, (~allowed)[:, None])
        for r, row in enumerate(batch):
            o = 0
            for j, cs, idx, n in row:
                L, t, n_s = max(cs), tls[j], n_scored[j]
                ctx_nll = -logp[r, o : o + L - 1].gather(-1, toks[r, o + 1 : o + L, None])[:, 0].double()
                for k, (c, out) in enumerate(zip(cs, idx, strict=True)):
                    start = o + L + k * len(t)
                    first = -logp[r, o + c - 1, t[0]].double()  # the context's position c-1 predicts the tail
                    rest = -logp[r, start : start + len(t) - 1].gather(
                        -1, toks[r, start + 1 : start + len(t), None]
                    )
                    tail_nll = torch.cat([first[None], rest[:, 0].double()])
                    token_nll[out] = tail_nll[len(t) - n_s :].float()
                    nll[out] = tail_nll[len(t) - n_s :].sum()
                    seq_nll[out] = ctx_nll[: c - 1].sum() + tail_nll.sum()
                    n_tokens[out], seq_tokens[out] = n_s, c + len(t) - 1
                o += n
    return ContinuationScores(nll, n_tokens, tuple(token_nll), seq_nll, seq_tokens)
