"""The small tokenizer interface the toolkit relies on, and an adapter for Hugging Face ones.

Anything with ``encode``, ``decode`` and ``get_vocab`` works (the organism's word-level
tokenizer implements it directly); :class:`HFTokenizer` wraps a ``transformers`` tokenizer.

BOS policy: a tokenizer's ``encode(text)`` gives the ids a prompt is fed to the model as, and
adds at most one special token, a leading BOS, when its ``prepend_bos`` says so; a tokenizer
with an ``encode_plain`` method gives through it the ids of ``text`` as they appear inside a
sequence (no special tokens), which is how single words, stop strings, markers and
continuations are matched. A tokenizer without ``encode_plain`` adds no special tokens at all.
"""

from typing import Any, Protocol, runtime_checkable

from interp.errors import SpecError
from interp.fingerprint import sha256_json, tokenizer_hash


@runtime_checkable
class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def get_vocab(self) -> dict[str, int]: ...


def adds_bos_by_default(tok: Any) -> bool:
    """Whether a ``transformers`` tokenizer puts its BOS token first when called as is."""
    bos = tok.bos_token_id
    if bos is None:
        return False
    probe = "a b"
    full = list(tok(probe)["input_ids"])
    plain = list(tok(probe, add_special_tokens=False)["input_ids"])
    return len(full) > len(plain) and full[0] == bos and full[1 : 1 + len(plain)] == plain


class HFTokenizer:
    """Adapter from a Hugging Face tokenizer to :class:`Tokenizer`, with an explicit BOS policy.

    ``encode`` returns the tokenizer's ids without special tokens, preceded by the BOS token when
    ``prepend_bos`` is true (and the text does not already start with it, as a chat template
    does); ``encode_plain`` returns them without any special token. Special tokens that a
    tokenizer would append (an EOS) are never added: a prompt is continued, not ended.

    Args:
        tok: a ``transformers`` tokenizer.
        prepend_bos: ``None`` follows the tokenizer's own default (Llama tokenizers add BOS,
            GPT-2 and Qwen2 do not); ``True`` / ``False`` override it.

    Raises:
        SpecError: ``prepend_bos=True`` for a tokenizer that has no BOS token.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> from transformers import PreTrainedTokenizerFast
        >>> raw = Tokenizer(models.WordLevel({"<s>": 0, "hi": 1, "there": 2}, unk_token="<s>"))
        >>> raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        >>> t = HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>"), prepend_bos=True)
        >>> t.encode("hi there"), t.encode_plain("there"), t.encode("<s> hi")
        ([0, 1, 2], [2], [0, 1])
    """

    def __init__(self, tok: Any, prepend_bos: bool | None = None) -> None:
        self.tok = tok
        if prepend_bos is None:
            prepend_bos = adds_bos_by_default(tok)
        elif prepend_bos and tok.bos_token_id is None:
            raise SpecError(
                f"prepend_bos=True, but the tokenizer {type(tok).__name__} has no BOS token; "
                "pass prepend_bos=False or leave it unset"
            )
        self.prepend_bos = bool(prepend_bos)

    def __repr__(self) -> str:
        return f"HFTokenizer({type(self.tok).__name__}, prepend_bos={self.prepend_bos})"

    @property
    def bos_token_id(self) -> int | None:
        bos = self.tok.bos_token_id
        return None if bos is None else int(bos)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``, with a leading BOS when ``prepend_bos`` and ``add_special_tokens``."""
        ids = self.encode_plain(text)
        if add_special_tokens and self.prepend_bos and (not ids or ids[0] != self.tok.bos_token_id):
            ids.insert(0, int(self.tok.bos_token_id))
        return ids

    def encode_plain(self, text: str) -> list[int]:
        """Ids of ``text`` as they appear inside a sequence: no BOS, no other special token."""
        return [int(i) for i in self.tok(text, add_special_tokens=False)["input_ids"]]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids))

    def get_vocab(self) -> dict[str, int]:
        return dict(self.tok.get_vocab())

    @property
    def pad_token_id(self) -> int:
        for cand in (self.tok.pad_token_id, self.tok.eos_token_id, 0):
            if cand is not None:
                return int(cand)
        return 0

    def hash(self) -> str:
        """Vocabulary, special tokens, BOS policy, chat template and (fast tokenizers) the pipeline."""
        backend = getattr(self.tok, "backend_tokenizer", None)
        extra = {
            "class": type(self.tok).__name__,
            "bos": self.tok.bos_token_id,
            "eos": self.tok.eos_token_id,
            "prepend_bos": self.prepend_bos,
            # merges, normalizer and pre-tokenizer decide the ids as much as the vocabulary does
            "pipeline": sha256_json(backend.to_str()) if backend is not None else None,
            # chat prompts are rendered through it, so it decides their ids too
            "chat_template": getattr(self.tok, "chat_template", None) or None,
        }
        return tokenizer_hash(self.get_vocab(), extra)


def hash_tokenizer(tok: Tokenizer) -> str:
    """The tokenizer's own ``hash()`` if it has one, else a hash of its vocabulary."""
    own = getattr(tok, "hash", None)
    if callable(own):
        return own()
    return tokenizer_hash(tok.get_vocab(), {"class": type(tok).__name__})


def encode_plain(tok: Tokenizer, text: str) -> list[int]:
    """Ids of ``text`` without special tokens, for any :class:`Tokenizer`."""
    plain = getattr(tok, "encode_plain", None)
    return list(plain(text)) if callable(plain) else list(tok.encode(text))


def tokenizer_record(tok: Tokenizer | None) -> dict[str, Any]:
    """What a cache manifest records of a tokenizer: its hash and BOS policy.

    Example:
        >>> from interp.organism.tokenizer import WordTokenizer
        >>> r = tokenizer_record(WordTokenizer(["a", "b"]))
        >>> r["prepend_bos"], r["bos_token_id"], r["hash"].startswith("sha256:")
        (False, None, True)
    """
    if tok is None:
        return {"hash": None, "prepend_bos": False, "bos_token_id": None}
    bos = getattr(tok, "bos_token_id", None)
    return {
        "hash": hash_tokenizer(tok),
        "prepend_bos": bool(getattr(tok, "prepend_bos", False)),
        "bos_token_id": None if bos is None else int(bos),
    }


def pad_id(tok: Tokenizer | None) -> int:
    return int(getattr(tok, "pad_token_id", 0) or 0) if tok is not None else 0
