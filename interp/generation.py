"""Batched generation with a key-value cache for any loaded model (``HookedTransformer`` or ``hf:`` bridge).

Two layers:

- :class:`IncrementalDecoder` holds one batch of prompts and its key-value cache: ``.logits`` are
  the next-token logits of every row, ``.advance(tokens)`` feeds one token per row and updates
  them. Decoders that combine several models per step (proxy-tuning) run one decoder per model
  in lockstep.
- :func:`generate` continues token prompts greedily or by sampling (temperature, top-k,
  top-p), with the semantics of :func:`interp.organism.generate.generate` (greedy at
  ``temperature == 0``, the stop token kept as the last token, ``forbid`` ids never generated,
  a pad id fed to rows that stopped).

Each forward pass goes through the model's own forward, so hooks registered at its hook points
with :mod:`interp.hooks` fire on the prompt and again on every new token (for the new position
only: with a cache, a step's activations have ``pos == 1``)::

    with add_vector(model, "blocks.1.hook_resid_post", v):
        out = generate(model, prompts, max_new_tokens=20)

Prompts of unequal length: :func:`generate` sorts prompts by length and left-pads each batch
(:func:`padded_batches`) with an attention mask, from which both backends derive each row's
positions, through the prompt pass and every cached step; each row then decodes as it would
alone (the same greedy tokens; logits equal within float rounding). :class:`IncrementalDecoder`
does the padding, for decoders of your own; :func:`length_batches` gives the padding-free
grouping by equal length where a caller needs bit-identical logits.

The pad id: by default the model's tokenizer's pad token, else its end-of-sequence token
(:func:`default_pad_id`), never an arbitrary 0 (which is a real token in most vocabularies).

The cache: ``HookedTransformer`` uses TransformerLens' ``TransformerLensKeyValueCache``;
``TransformerBridge`` hands the Hugging Face cache back and forth. Each step of an ``hf:`` model
runs on its plain Hugging Face modules (:func:`interp.native_hooks.native_step`, at the speed of
``transformers``' own ``generate``), the hooks at the common hook points (``hook_resid_pre`` /
``_mid`` / ``_post``, ``hook_attn_out``, ``hook_mlp_out``, ``hook_embed``, ...) served from the
modules they stand for; a hook at a point only the bridge computes (``hook_pattern``,
``hook_attn_scores``, ...) sends the step through the bridge's forward instead. Both give the
same activations and logits. The unembedding runs on the last position only (``logits_to_keep=1``,
as Hugging Face's ``generate`` does), so hooks at ``unembed.*`` see one position in the prompt pass.
"""

import inspect
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.batching import length_batches, padded_batches, row_budgets, trim_at_stop
from interp.errors import GenerationError
from interp.models import Model, as_model
from interp.native_hooks import native_step
from interp.sampling import check_forbid, check_sampling, sample_next

log = logging.getLogger(__name__)

__all__ = [
    "GenerationError",
    "IncrementalDecoder",
    "default_pad_id",
    "generate",
    "length_batches",
    "padded_batches",
    "resolve_pad_id",
    "sample_next",
]


def default_pad_id(model: "Model | nn.Module") -> int | None:
    """The id a model pads with: its tokenizer's pad token, else its end-of-sequence token.

    ``None`` when the model has no tokenizer or the tokenizer has neither (never a made-up 0).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> default_pad_id(HookedTransformer(cfg)) is None
        True
    """
    tok = as_model(model).tokenizer
    if tok is None:
        return None
    hf = getattr(tok, "tok", None)  # an HFTokenizer: ask the wrapped tokenizer, not its 0 fallback
    if hf is not None:
        candidates = (getattr(hf, "pad_token_id", None), getattr(hf, "eos_token_id", None))
    else:
        candidates = (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None))
    for cand in candidates:
        if cand is not None:
            return int(cand)
    return None


def resolve_pad_id(model: "Model | nn.Module", pad_id: int | None, stop_id: int | None = None) -> int | None:
    """``pad_id`` when given, else :func:`default_pad_id`, else ``stop_id`` (``None`` if none).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> resolve_pad_id(HookedTransformer(cfg), None, stop_id=4), resolve_pad_id(HookedTransformer(cfg), 2)
        (4, 2)
    """
    if pad_id is None:
        pad_id = default_pad_id(model)
    return stop_id if pad_id is None else pad_id


def _check_pad(model: Model, pad_id: object) -> int:
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < model.d_vocab:
        raise GenerationError(
            f"pad_id={pad_id!r} is not a token of {model.spec!r}; expected an id in 0..{model.d_vocab - 1}"
        )
    return pad_id


def _is_hooked(module: nn.Module) -> bool:
    from transformer_lens import HookedTransformer

    return isinstance(module, HookedTransformer)


def _is_bridge(module: nn.Module) -> bool:
    from transformer_lens.model_bridge import TransformerBridge

    return isinstance(module, TransformerBridge)


class IncrementalDecoder:
    """One batch of prompts decoded step by step with a key-value cache.

    The prompt pass runs on construction; after it, ``logits`` holds the next-token logits of
    every row. ``advance(tokens)`` appends one token per row (one forward pass over the batch,
    reusing the cached keys and values) and refreshes ``logits``.

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``TransformerBridge``.
        prompts: token ids of each prompt (unequal lengths are left-padded with ``pad_id`` and
            masked out).
        pad_id: the id placed in the left padding (never attended to); ``None`` takes
            :func:`default_pad_id`. Needed only when the prompts' lengths differ.

    Raises:
        GenerationError: no prompts, an empty prompt, prompts longer than the model's context,
            a ``pad_id`` that is not a token of the model, or prompts of unequal length that
            need padding when the model has no pad or end-of-sequence token to pad with.
        TypeError: the module is neither a ``HookedTransformer`` nor a ``TransformerBridge``.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> dec = IncrementalDecoder(HookedTransformer(cfg), [[1, 2, 3], [4, 0, 1]])
        >>> tuple(dec.logits.shape), dec.length
        ((2, 5), 3)
        >>> tuple(dec.advance(dec.logits.argmax(-1)).shape), dec.length
        ((2, 5), 4)
    """

    def __init__(
        self, model: "Model | nn.Module", prompts: Sequence[Sequence[int]], pad_id: int | None = None
    ):
        self.model = as_model(model)
        module = self.model.module
        if not prompts:
            raise GenerationError("prompts is empty; expected at least one prompt")
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise GenerationError(f"prompt {i} is empty; every prompt needs at least one token")
        self._hooked = _is_hooked(module)
        if not self._hooked and not _is_bridge(module):
            raise TypeError(
                f"cannot decode with {type(module).__name__}; expected a HookedTransformer or a "
                "TransformerBridge (an hf: model)"
            )
        width = max(len(p) for p in prompts)
        if width > self.model.n_ctx:
            raise GenerationError(f"a prompt has {width} tokens; the model's context is {self.model.n_ctx}")
        device = self.model.device
        self.batch = len(prompts)
        self.padded = any(len(p) != width for p in prompts)
        if pad_id is None:
            pad_id = default_pad_id(self.model)
        if pad_id is None and self.padded:
            raise GenerationError(
                f"prompts of {min(len(p) for p in prompts)} to {width} tokens need left padding, and "
                f"{self.model.spec!r} has no tokenizer pad or end-of-sequence token; pass pad_id"
            )
        if pad_id is not None:
            _check_pad(self.model, pad_id)
        rows = [[pad_id] * (width - len(p)) + list(p) for p in prompts]
        tokens = torch.tensor(rows, dtype=torch.long, device=device)
        self._mask = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long, device=device
        )
        self.length = width
        self._cache: Any = None
        self._bridge: tuple[str, list[nn.Module], bool] | None = None
        if self._hooked:
            from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

            self._cache = TransformerLensKeyValueCache.init_cache(module.cfg, device, self.batch)
        self.logits: Float[Tensor, "batch d_vocab"] = self._forward(tokens, self._mask)

    @property
    def remaining(self) -> int:
        """How many more tokens fit in the model's context."""
        return self.model.n_ctx - self.length

    def advance(self, tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        """Append one token to every row and return the new next-token logits.

        Args:
            tokens: one token id per row.

        Returns:
            The next-token logits after the new tokens (also stored in ``self.logits``).

        Raises:
            GenerationError: ``tokens`` is not one id per row, or the context is full.

        Example:
            >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
            >>> cfg = HookedTransformerConfig(
            ...     n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
            >>> dec = IncrementalDecoder(HookedTransformer(cfg), [[1, 2]])
            >>> tuple(dec.advance(torch.tensor([3])).shape)
            (1, 5)
        """
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        if tokens.shape[0] != self.batch:
            raise GenerationError(f"got {tokens.shape[0]} tokens; expected one per row ({self.batch})")
        if self.remaining <= 0:
            raise GenerationError(f"the context is full ({self.length} of {self.model.n_ctx} tokens)")
        step = tokens.to(self.model.device)[:, None]
        ones = torch.ones_like(step)
        self._mask = torch.cat([self._mask, ones], dim=1)
        self.length += 1
        # TransformerLens keeps the running mask inside its cache; the bridge needs it whole.
        self.logits = self._forward(step, ones if self._hooked else self._mask)
        return self.logits

    def _forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        module = self.model.module
        with torch.no_grad():
            if self._hooked:
                logits = module(tokens, past_kv_cache=self._cache, attention_mask=mask)
            else:  # the Hugging Face modules themselves when every hooked point allows it
                step = native_step(module, tokens, mask, self._cache)
                logits, self._cache = step if step is not None else self._bridge_forward(tokens, mask)
        return logits[:, -1].float()

    def _bridge_forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Any]:
        module = self.model.module
        if self._bridge is None:  # once per decoder: a walk over every module per step cost ~10%
            self._bridge = (_hf_cache_name(module), _attention_components(module), _keeps_logits(module))
        name, targets, keep = self._bridge
        extra = {} if self._cache is None else {name: self._cache}
        if keep:  # only the last position's logits are used: skip the unembedding of the rest
            extra["logits_to_keep"] = 1
        with _bridge_cache_kwarg(targets):
            return module(tokens, return_type="logits_and_cache", attention_mask=mask, use_cache=True,
                          **extra)


def _hf_cache_name(bridge: nn.Module) -> str:
    """``cache`` for transformers 5 models, ``past_key_values`` for those that still take it."""
    params = inspect.signature(bridge.original_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _keeps_logits(bridge: nn.Module) -> bool:
    """Whether the Hugging Face model can compute the last position's logits alone."""
    return "logits_to_keep" in inspect.signature(bridge.original_model.forward).parameters


def _attention_components(bridge: nn.Module) -> list[nn.Module]:
    """The bridge's attention components: those that write the key-value cache."""
    return [m for m in bridge.modules() if hasattr(m, "_update_kv_cache")]


def _cache_kwarg_pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        return args, {**kwargs, "past_key_values": kwargs["cache"]}
    return None


@contextmanager
def _bridge_cache_kwarg(targets: list[nn.Module]) -> Iterator[None]:
    """Hand the bridge's attention components the Hugging Face cache under the name they read.

    transformers 5 passes a layer's cache as ``cache=``; TransformerLens' attention bridges
    (``AttentionBridge._update_kv_cache``) look for ``past_key_values`` or ``layer_past`` only,
    so without this they never write the cache and each decoding step attends to itself
    alone. A keyword pre-hook on each attention component (``targets``, from
    :func:`_attention_components`) copies ``cache`` to ``past_key_values`` for the duration of
    one forward pass (a no-op once TransformerLens reads ``cache`` itself: the same object is
    found either way).
    """
    handles: list = []
    try:
        for m in targets:
            handles.append(m.register_forward_pre_hook(_cache_kwarg_pre_hook, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def _generate_batch(
    model: Model,
    prompts: list[list[int]],
    budgets: list[int],
    sampling: dict[str, Any],
    stop_id: int | None,
    pad_id: int | None,
    forbid: list[int] | None,
    generator: torch.Generator | None,
) -> list[list[int]]:
    dec = IncrementalDecoder(model, prompts, pad_id=pad_id)
    steps = max(budgets)
    device = dec.logits.device
    budget = torch.tensor(budgets, device=device)
    done = budget <= 0
    pad = None if pad_id is None else torch.full((dec.batch,), pad_id, dtype=torch.long, device=device)
    out = []
    for t in range(steps):
        nxt = sample_next(dec.logits, forbid=forbid, generator=generator, **sampling)
        if pad is not None:
            nxt = torch.where(done, pad, nxt)
        out.append(nxt)
        if stop_id is not None:
            done |= nxt == stop_id
        done |= budget <= t + 1
        if t == steps - 1 or bool(done.all()):
            break
        dec.advance(nxt)
    if not out:
        return [[] for _ in prompts]
    rows = [row[:b] for row, b in zip(torch.stack(out, 1).tolist(), budgets, strict=True)]
    return trim_at_stop(rows, stop_id)


def generate(
    model: "Model | nn.Module",
    prompts: list[list[int]],
    max_new_tokens: "int | Sequence[int]",
    temperature: float = 0.0,
    stop_id: int | None = None,
    pad_id: int | None = None,
    forbid: list[int] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    progress: bool = False,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> list[list[int]]:
    """Continue each prompt with a key-value cache, prompts of any lengths batched together.

    Prompts are sorted by length and left-padded into batches of ``batch_size`` with an
    attention mask (each row's positions count from its own first token, padding is never
    attended to), so each row's continuation is that of the prompt run alone: the same tokens
    under greedy decoding, up to float rounding in the logits (:func:`padded_batches` keeps a
    row out of a batch whose padding would cut its continuation at the context's end). Works on
    a ``HookedTransformer`` (the organism's included) and on an ``hf:`` model
    (``TransformerBridge``: GPT-2, Llama, Qwen2, ...). Matches
    :func:`interp.organism.generate.generate` on a ``HookedTransformer``.

    Hooks installed on the model fire on every forward pass, the prompt pass and each new
    token, on the padded batch: a hook that acts on every position, or on positions counted
    from the end (``-1``), acts on each row as on the prompt alone; one that picks positions
    counted from the start, or pools over positions, sees each row's left padding too. With
    no pad id at all (see ``pad_id``), prompts are batched by equal length instead, unpadded.

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``TransformerBridge``;
            prompt plus continuation is bounded by its context (``cfg.n_ctx``).
        prompts: token ids of each prompt.
        max_new_tokens: most tokens to add per prompt: one number for all, or one per prompt.
        temperature: 0 for greedy decoding, else the sampling temperature.
        stop_id: a token that ends a continuation (kept as its last token).
        pad_id: the left padding of shorter prompts (masked, never attended to) and the token
            fed to a row that has stopped (never returned). ``None`` takes
            :func:`default_pad_id` (the tokenizer's pad token, else its end-of-sequence token),
            else ``stop_id``; with neither, prompts are not padded.
        forbid: token ids that may never be generated.
        generator: random generator for sampling (seed it for reproducible samples; rows
            draw in batch order, so a sample depends on the batch it ran in).
        batch_size: most prompts run together.
        progress: show a progress bar over batches.
        top_k: when sampling, keep only the ``top_k`` most likely tokens (``None``: all).
        top_p: when sampling, keep only the nucleus: the smallest set of most likely tokens
            whose probabilities sum to at least ``top_p`` (1: all). See :func:`sample_next`.

    Returns:
        The generated ids of each prompt (without the prompt), in the order of ``prompts``.

    Raises:
        GenerationError: ``max_new_tokens < 0`` (or not one per prompt), ``temperature < 0``,
            ``top_k < 1``, ``top_p`` outside ``(0, 1]``, a ``pad_id`` or ``forbid`` id that is
            not a token of the model, an empty prompt, or a prompt longer than the context.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> out = generate(HookedTransformer(cfg), [[1, 2], [3, 4, 0]], max_new_tokens=3)
        >>> [len(o) for o in out]
        [3, 3]
    """
    check_sampling(temperature, top_k, top_p)
    m = as_model(model)
    budgets = row_budgets(max_new_tokens, prompts, m.n_ctx)
    if forbid:
        check_forbid(forbid, m.d_vocab)
    pad_id = resolve_pad_id(m, pad_id, stop_id)  # with neither a pad nor a stop, no row stops
    if pad_id is not None:
        _check_pad(m, pad_id)
    if pad_id is None:
        batches = list(length_batches(prompts, batch_size))
    else:
        batches = list(padded_batches(prompts, batch_size, budgets, m.n_ctx))
    longest = max((len(p) for p in prompts), default=0)
    if longest > m.n_ctx:  # refused before any forward pass
        raise GenerationError(f"a prompt has {longest} tokens; the model's context is {m.n_ctx}")
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    results: list[list[int]] = [[] for _ in prompts]
    for chunk in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        if max(budgets[i] for i in chunk) == 0:
            continue
        outs = _generate_batch(
            m,
            [list(prompts[i]) for i in chunk],
            [budgets[i] for i in chunk],
            sampling,
            stop_id,
            pad_id,
            forbid,
            generator,
        )
        for i, o in zip(chunk, outs, strict=True):
            results[i] = o
    return results
