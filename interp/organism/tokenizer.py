"""A word-level tokenizer with a fixed vocabulary: one id per whitespace-separated word."""

from interp.errors import InterpError
from interp.fingerprint import tokenizer_hash

PAD = "<pad>"
# Words of the organism's language, in id order after PAD and before the node names.
# ``C`` asks a node's colour; ``D`` states a checked node's distance to the goal, ``X`` a distance
# that is unreachable or beyond the largest number word.
STRUCTURE = ("F", "Q", "B", "W", "T", "A", "E", ":", ">", "<", ";", "R", "_", "C", "D", "X")
MARKERS = ("WAIT", "CHECK", "OK", "BAD", "BACK")
NUMBERS = tuple(str(i) for i in range(1, 10))  # distances stated by checks


class UnknownWordError(InterpError, ValueError):
    """A word that the tokenizer's vocabulary does not contain."""


def organism_vocab(n_nodes: int, n_colours: int = 0) -> list[str]:
    """The vocabulary, in id order: padding, structure words, markers, numbers, colours, nodes."""
    colours = (f"c{i}" for i in range(n_colours))
    return [PAD, *STRUCTURE, *MARKERS, *NUMBERS, *colours, *(f"n{i}" for i in range(n_nodes))]


class WordTokenizer:
    """Maps whitespace-separated words to ids and back; round-trips single-spaced text exactly.

    Args:
        words: the vocabulary, in id order (unique).

    Raises:
        ValueError: ``words`` is empty or has duplicates.

    Example:
        >>> tok = WordTokenizer(organism_vocab(4))
        >>> tok.decode(tok.encode("Q n1 n3 T"))
        'Q n1 n3 T'
    """

    def __init__(self, words: list[str]) -> None:
        if not words or len(set(words)) != len(words):
            raise ValueError(f"vocabulary must be non-empty and unique, got {len(words)} words")
        bad = [w for w in words if not w or any(c.isspace() for c in w)]
        if bad:
            raise ValueError(f"vocabulary words must be non-empty with no whitespace: {bad[:5]}")
        self._words = list(words)
        self._ids = {w: i for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self._words)

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self)} words)"

    @property
    def pad_token_id(self) -> int:
        return self._ids.get(PAD, 0)

    def encode(self, text: str) -> list[int]:
        """Ids of the words of ``text``; raises :class:`UnknownWordError` naming an unknown one."""
        ids = []
        for pos, word in enumerate(text.split()):
            try:
                ids.append(self._ids[word])
            except KeyError:
                raise UnknownWordError(
                    f"unknown word {word!r} at word {pos} of {text[:80]!r}; the vocabulary has "
                    f"{len(self)} words: {' '.join(self._words[:24])} ..."
                ) from None
        return ids

    def decode(self, ids: list[int]) -> str:
        """The words of ``ids`` joined by single spaces."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._words):
                raise UnknownWordError(f"token id {i} is outside the vocabulary 0..{len(self) - 1}")
            out.append(self._words[i])
        return " ".join(out)

    def words(self, ids: list[int]) -> list[str]:
        return self.decode(ids).split()

    def token_id(self, word: str) -> int:
        return self.encode(word)[0]

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def hash(self) -> str:
        return tokenizer_hash(self._ids, {"class": "WordTokenizer", "pad": PAD})
