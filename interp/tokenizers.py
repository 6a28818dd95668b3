"""The small tokenizer interface the toolkit relies on, and an adapter for Hugging Face ones.

Anything with ``encode``, ``decode`` and ``get_vocab`` works (the organism's word-level
tokenizer implements it directly); :class:`HFTokenizer` wraps a ``transformers`` tokenizer.
"""

from typing import Any, Protocol, runtime_checkable

from interp.fingerprint import tokenizer_hash


@runtime_checkable
class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def get_vocab(self) -> dict[str, int]: ...


class HFTokenizer:
    """Adapter from a Hugging Face tokenizer to :class:`Tokenizer`.

    Args:
        tok: a ``transformers`` tokenizer.
        prepend_bos: put the BOS token first when the tokenizer does not already
            (TransformerLens's ``default_prepend_bos`` behaviour).
    """

    def __init__(self, tok: Any, prepend_bos: bool = False) -> None:
        self.tok = tok
        self.prepend_bos = prepend_bos and tok.bos_token_id is not None

    def encode(self, text: str) -> list[int]:
        ids = list(self.tok(text)["input_ids"])
        if self.prepend_bos and (not ids or ids[0] != self.tok.bos_token_id):
            ids.insert(0, self.tok.bos_token_id)
        return ids

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
        extra = {
            "class": type(self.tok).__name__,
            "bos": self.tok.bos_token_id,
            "eos": self.tok.eos_token_id,
            "prepend_bos": self.prepend_bos,
        }
        return tokenizer_hash(self.get_vocab(), extra)


def hash_tokenizer(tok: Tokenizer) -> str:
    """The tokenizer's own ``hash()`` if it has one, else a hash of its vocabulary."""
    own = getattr(tok, "hash", None)
    if callable(own):
        return own()
    return tokenizer_hash(tok.get_vocab(), {"class": type(tok).__name__})


def pad_id(tok: Tokenizer | None) -> int:
    return int(getattr(tok, "pad_token_id", 0) or 0) if tok is not None else 0
