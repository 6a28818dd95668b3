"""One word as the one token it is inside a text, for ``--stop``, ``--answer-after`` and ``--marker``."""

from typing import Any

from interp.errors import CommandLineError


def single_token(tokenizer: Any, word: str, flag: str) -> int:
    """The id of ``word`` as it stands inside a sequence (no BOS, no special token).

    A tokenizer that marks the start of a word (Llama's SentencePiece-style ``▁``) encodes a
    lone ``.`` as ``['▁', '.']``; inside a text the ``.`` follows a word and is the one token
    ``.``. So a leading token that decodes to nothing is dropped before counting.

    Args:
        tokenizer: a :class:`~interp.models.Model` or a tokenizer with ``encode`` and ``decode``.
        word: the text that must be one token.
        flag: the command-line flag that named it, for the error.

    Raises:
        CommandLineError: ``word`` is not one token, with the tokens it is.

    Example:
        >>> class Chars:  # one token per character
        ...     def encode(self, text): return [ord(c) for c in text]
        ...     def decode(self, ids): return "".join(map(chr, ids))
        ...     def get_vocab(self): return {}
        >>> single_token(Chars(), ".", "--stop")
        46
    """
    from interp.tokenizers import encode_plain

    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    ids = encode_plain(tok, word)
    if len(ids) == 2 and tok.decode([ids[0]]) == "":
        ids = ids[1:]  # the word-start marker alone
    if len(ids) != 1:
        pieces = [tok.decode([i]) for i in ids]
        raise CommandLineError(
            f"{flag} {word!r} is {len(ids)} tokens {pieces}; expected a text that is a single token"
        )
    return int(ids[0])
