"""Cross-model patching by weight transplant, and the relative weight change per component.

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

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from interp.errors import DamageError
from interp.hooks import resolve_hook_names
from interp.models import Model

_SITE = re.compile(r"^blocks\.(\d+)\.hook_(attn_out|mlp_out|resid_post)$")
_BLOCK = re.compile(r"(?:^|\.)(?:blocks|h|layers|layer)\.(\d+)\.")
_ATTN = re.compile(r"(?:^|\.)(?:attn|self_attn|attention|ln1|ln_1|input_layernorm)(?:\.|$)")
_MLP = re.compile(r"(?:^|\.)(?:mlp|ln2|ln_2|post_attention_layernorm|feed_forward)(?:\.|$)")
_EMBED = re.compile(r"embed|wte|wpe")


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
        interp.errors.DamageError: base 'tiny1' and tuned 'tiny2' differ in architecture: n_layers 1 vs 2; ...
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
