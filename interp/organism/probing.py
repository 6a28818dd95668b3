"""The organism's answers for probes that take a reference or a correctness check.

``probes`` knows no world; the organism's experiments hand these in:
:func:`organism_reference` (the reference answer for :func:`probes.info_gain.info_gain`) and
:func:`organism_is_correct` (``is_correct`` for :func:`probes.cot_length.forced_accuracy`).
"""

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
