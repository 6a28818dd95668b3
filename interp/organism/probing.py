"""The organism's answers for probes that take a reference or a correctness check.

``probes`` knows no world; the organism's experiments hand these in:
:func:`organism_reference` (the reference answer for :func:`probes.info_gain.info_gain`),
:func:`organism_is_correct` (``is_correct`` for :func:`probes.cot_length.forced_accuracy`) and
:func:`closes_a_move` (its ``intercept``, to force checks where the trained format puts them).
"""

import re
from collections.abc import Callable, Sequence

from interp.organism.traces import answer_words
from interp.organism.validator import extract_answer


def organism_reference(world, start: int, goal: int, response: str | Sequence[str] | None = None) -> str:
    """The reference answer of an organism problem: ``"<path> E"``.

    The response's own answer when it is a shortest path (several may exist), else the
    shortest path that always takes the first good move.

    Example:
        >>> from interp.organism.world import WorldConfig, make_world
        >>> w = make_world(WorldConfig(n_nodes=6, out_degree=2, max_id_dist=2, max_ood_dist=3))
        >>> s, g = w.split("train")[0]
        >>> ref = organism_reference(w, s, g)
        >>> ref.endswith("E") and len(ref.split()) - 2 == w.dist(s, g)
        True
    """
    if response is not None:
        words = response.split() if isinstance(response, str) else list(response)
        ans = extract_answer(words, world.n_nodes)
        if ans is not None and world.is_shortest_path(ans, start, goal):
            return " ".join(answer_words(ans))
    path = [start]
    while path[-1] != goal:
        moves = world.good_moves(path[-1], goal)
        if not moves:
            raise ValueError(f"no path from n{start} to n{goal} in the world")
        path.append(moves[0])
    return " ".join(answer_words(path))


def organism_is_correct(
    world, problems: Sequence[tuple[int, int]], tokenizer
) -> Callable[[int, list[int]], bool]:
    """``is_correct`` for organism problems: the answer after the last ``A`` is a shortest path.

    Example:
        >>> from interp.organism.world import WorldConfig, make_world
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> w = make_world(WorldConfig(n_nodes=6, max_id_dist=2, max_ood_dist=3))
        >>> tok = WordTokenizer(organism_vocab(6))
        >>> organism_is_correct(w, [(0, 1)], tok)(0, tok.encode("A n0 E"))
        False
    """
    def check(i: int, ids: list[int]) -> bool:
        ans = extract_answer(tokenizer.decode(ids).split(), world.n_nodes)
        s, g = problems[i]
        return ans is not None and world.is_shortest_path(ans, s, g)

    return check


_NODE = re.compile(r"n[0-9]+")


def closes_a_move(tokenizer) -> Callable[[list[int]], bool]:
    """The intercept that keeps forced thinking inside the organism's trained format.

    For :class:`probes.cot_length.ForceConfig` with ``stop_word=";"``: true only where the ``;``
    about to be written would directly close a move (``> n17 ;``: the last word is a node and the
    one before it ``>``), so a forced ``WAIT`` turns it into a check after that move, where
    training places checks; the model then writes the check (``CHECK n17 : ... D 1 OK ;``)
    itself. A ``;`` that closes a check (``OK ;``), or anything else, is let through.

    Args:
        tokenizer: decodes one token id to its word (the organism's
            :class:`~interp.organism.tokenizer.WordTokenizer`).

    Returns:
        ``intercept(ids_so_far) -> bool`` over the response generated so far, the ``;`` excluded.

    Example:
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> tok = WordTokenizer(organism_vocab(24))
        >>> closes = closes_a_move(tok)
        >>> closes(tok.encode("n5 : n9 n17 > n17")), closes(tok.encode("> n17 WAIT CHECK n17 : n4 D 1 OK"))
        (True, False)
    """

    def closes_a_move(ids: list[int]) -> bool:
        if len(ids) < 2:
            return False
        before, last = (tokenizer.decode([int(i)]).strip() for i in ids[-2:])
        return before == ">" and _NODE.fullmatch(last) is not None

    return closes_a_move
