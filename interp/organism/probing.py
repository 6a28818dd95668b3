"""The organism's answers for probes that take a reference or a correctness check.

``probes`` knows no world; the organism's experiments hand these in:
:func:`organism_reference` (the reference answer for :func:`probes.info_gain.info_gain`),
:func:`organism_is_correct` (``is_correct`` for :func:`probes.cot_length.forced_accuracy`) and
:func:`closes_a_move` (its ``intercept``, to force checks where the trained format puts them).
"""

import re
from collections.abc import Callable, Sequence

from interp.organism.traces import answer_words
from interp.organism.validator import extract_answer, parse_node
from interp.organism.world import World


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


def _at_an_uncertain_step(words: list[str], world: World) -> bool:
    """Does the move ending ``words`` (``... cur : .. > x``) leave an uncertain step for a node
    other than the goal, and not as the correction after ``BAD BACK``?"""
    if "Q" not in words or len(words) < 4:
        return False
    q = words.index("Q")
    goal = parse_node(words[q + 2], world.n_nodes) if q + 2 < len(words) else None
    if goal is None or parse_node(words[-1], world.n_nodes) == goal or words[-3:-2] == ["BACK"]:
        return False
    ends = [i for i, w in enumerate(words) if w in (";", "T")]
    cur = parse_node(words[ends[-1] + 1], world.n_nodes) if ends and ends[-1] + 1 < len(words) else None
    return cur is not None and world.uncertain(cur, goal)


def closes_a_move(tokenizer, world: World | None = None) -> Callable[[list[int]], bool]:
    """The intercept that keeps forced thinking inside the organism's trained format.

    For :class:`probes.cot_length.ForceConfig` with ``stop_word=";"``: true only where the ``;``
    about to be written would directly close a move (``> n17 ;``: the last word is a node and the
    one before it ``>``), so a forced ``WAIT`` turns it into a check after that move, where
    training places checks; the model then writes the check (``CHECK n17 : ... D 1 OK ;``)
    itself. A ``;`` that closes a check (``OK ;``), or anything else, is let through.

    With ``world``, it reads the problem from the prompt (``Q s g T``) and allows only a move
    made at an uncertain step (:meth:`World.uncertain`, where training places checks), not the
    move onto the goal and not the corrected move after ``BAD BACK``.

    Args:
        tokenizer: decodes one token id to its word (the organism's
            :class:`~interp.organism.tokenizer.WordTokenizer`).
        world: the world, to keep forcing at the steps where training places checks.

    Returns:
        ``intercept(ids_so_far) -> bool`` over the prompt and the response generated so far,
        the ``;`` excluded.

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
        if before != ">" or _NODE.fullmatch(last) is None:
            return False
        return world is None or _at_an_uncertain_step(tokenizer.decode([int(i) for i in ids]).split(), world)

    return closes_a_move
