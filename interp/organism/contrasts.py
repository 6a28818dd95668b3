"""Matched contrasts on organism traces: token positions that differ only in the behaviour.

A steering vector read as a difference of means is only as clean as its two position sets. The
sets built here hold one context type fixed (the node token of a committed move, ``> n17``) and
split it by the behaviour alone:

- :func:`check_vs_commit`: moves followed by a check (``> n17 WAIT CHECK ... OK``) against moves
  closed at once (``> n17 ;``); given the world, both sides are restricted to good moves at
  uncertain steps (:meth:`World.uncertain`), the only places training puts a check;
- :func:`wrong_vs_good`: moves that the trace's own check marks ``BAD`` against those marked
  ``OK`` (both followed by ``WAIT``), or, ``by="world"``, moves off every shortest path against
  moves on one, both at uncertain steps;
- :func:`reflection_vs_execution` (SEAL, Chen et al. 2025): thought boundaries whose next thought
  is a reflection (a check, ending ``OK`` or in the transition ``BAD BACK``) against those whose
  next thought is execution (the next step, or the answer).

Only forward steps (``cur : <neighbours> > next``) are moves; the correction after a caught
mistake (``BAD BACK > n17``) is never used, its context differs. Positions index the sequence's
tokens; the organism's tokenizer gives one token per word, so a word index is a token index.

Sequences come from the training traces (:func:`training_traces`, drawn with the trace builders
of :mod:`interp.organism.traces`) or from a model's own responses (:func:`model_traces`), each
the prompt ``Q s g T`` followed by the trace::

    seqs = training_traces(world, 200, seed=0)
    c = check_vs_commit(seqs, world=world)
    rows = encode_words(seqs, tok)
    # steering.layer_choice.contrast_vector(model, rows, c.positive, c.negative, hooks)
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from interp.errors import InterpError
from interp.organism.traces import DataRecipe, cot_example, cot_prompt
from interp.organism.validator import parse_node
from interp.organism.world import World

Words = str | Sequence[str] | Sequence[int]
_ANY_NODE = 10**9  # parse node words of any index when no world bounds them


class ContrastError(InterpError, ValueError):
    """Sequences or settings a contrast cannot be built from (ids without a tokenizer, ...)."""


class EmptyContrastError(ContrastError):
    """A contrast one side of which holds no position in the given sequences."""


@dataclass(frozen=True)
class Move:
    """A committed move of a forward step, as read from one sequence.

    Attributes:
        index: position of the node token after ``>``.
        head: the step's node (before ``:``).
        node: the node moved to (``None``: not a node word).
        goal: the problem's goal from a ``Q s g T`` prompt (``None``: no such prompt).
        next_word: the word after the node token (``None`` at the sequence's end).
        verdict: ``OK`` or ``BAD`` when a check follows, else ``None``.
        correction: the move after ``BAD BACK``.
    """

    index: int
    head: int
    node: int | None
    goal: int | None
    next_word: str | None
    verdict: str | None
    correction: bool


@dataclass(frozen=True)
class Contrast:
    """Two position sets over the same sequences: per sequence, the positions of each side.

    Attributes:
        name: which contrast (``check_vs_commit``, ``wrong_vs_good``).
        positive: per sequence, the positions showing the behaviour.
        negative: per sequence, the matched positions without it.
        meta: how it was built (sides' descriptions, filters, counts).
    """

    name: str
    positive: tuple[tuple[int, ...], ...]
    negative: tuple[tuple[int, ...], ...]
    meta: dict = field(default_factory=dict)

    @property
    def n_positive(self) -> int:
        return sum(len(p) for p in self.positive)

    @property
    def n_negative(self) -> int:
        return sum(len(p) for p in self.negative)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "positive": [list(p) for p in self.positive],
            "negative": [list(p) for p in self.negative],
            "meta": self.meta,
        }

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.n_positive} positive, {self.n_negative} negative positions "
            f"over {len(self.positive)} sequences"
        )


def sequence_words(seq: Words, tokenizer=None) -> list[str]:
    """One word per token of ``seq``: a string is split, words are kept, ids are decoded one by one.

    Raises:
        ContrastError: token ids without a tokenizer to read them.

    Example:
        >>> sequence_words("Q n0 n3 T n0 : n1 n2 > n1 ;")[-3:]
        ['>', 'n1', ';']
    """
    if isinstance(seq, str):
        return seq.split()
    items = list(seq)
    if all(isinstance(w, str) for w in items):
        return items
    if tokenizer is None:
        raise ContrastError("sequences of token ids need tokenizer=; pass the organism's WordTokenizer")
    # one decode per id keeps word i at token i whatever the tokenizer does with spaces
    return [tokenizer.decode([int(i)]).strip() for i in items]


def parse_moves(words: Sequence[str], n_nodes: int | None = None) -> list[Move]:
    """The committed moves of the forward steps in ``words`` (see :class:`Move`).

    Example:
        >>> ws = "Q n0 n3 T n0 : n1 n2 > n1 WAIT CHECK n1 : n3 D 1 OK ; n1 : n3 > n3 ;".split()
        >>> [(m.index, m.next_word, m.verdict) for m in parse_moves(ws)]
        [(9, 'WAIT', 'OK'), (23, ';', None)]
    """
    limit = n_nodes if n_nodes is not None else _ANY_NODE
    words = list(words)
    goal = None
    for q in range(len(words) - 3):
        if words[q] == "Q" and words[q + 3] == "T":
            goal = parse_node(words[q + 2], limit)
            break
    out = []
    for i, w in enumerate(words[:-1]):
        if w != ">":
            continue
        start = max((j for j in range(i) if words[j] in (";", "T")), default=None)
        if start is None or start + 2 >= i or words[start + 2] != ":":
            continue  # not a forward step (a backward step has ``<``, a walk's first step no ``T``)
        head = parse_node(words[start + 1], limit)
        if head is None:
            continue
        nxt = words[i + 2] if i + 2 < len(words) else None
        verdict = None
        if nxt == "WAIT":
            verdict = next((v for v in words[i + 3 :] if v in ("OK", "BAD", ";", "A")), None)
            verdict = verdict if verdict in ("OK", "BAD") else None
        node = parse_node(words[i + 1], limit)
        out.append(Move(i + 1, head, node, goal, nxt, verdict, words[i - 1] == "BACK"))
    return out


def _shifted(moves: list[Move], offset: int, length: int) -> tuple[int, ...]:
    return tuple(m.index + offset for m in moves if 0 <= m.index + offset < length)


def _build(
    name: str,
    sequences: Sequence[Words],
    tokenizer,
    n_nodes: int | None,
    offset: int,
    positive,
    negative,
    meta: dict[str, Any],
) -> Contrast:
    if not sequences:
        raise EmptyContrastError(f"contrast {name!r} got no sequences; pass at least one trace")
    pos, neg = [], []
    for seq in sequences:
        words = sequence_words(seq, tokenizer)
        moves = [m for m in parse_moves(words, n_nodes) if not m.correction and m.node is not None]
        pos.append(_shifted([m for m in moves if positive(m)], offset, len(words)))
        neg.append(_shifted([m for m in moves if negative(m)], offset, len(words)))
    counts = {"positive": sum(map(len, pos)), "negative": sum(map(len, neg))}
    for side, count in counts.items():
        if count == 0:
            raise EmptyContrastError(
                f"contrast {name!r} has no {side} position ({meta[side]}) in {len(sequences)} "
                f"sequences; pass traces with both kinds of move"
            )
    info = {**meta, "offset": offset, "sequences": len(sequences), **{f"n_{k}": v for k, v in counts.items()}}
    return Contrast(name, tuple(pos), tuple(neg), info)


def _check_offset(offset: Any) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ContrastError(f"offset={offset!r}; expected an int (0: the node token, -1: the '>' before it)")


def _at_uncertain_good_move(world: World):
    def ok(m: Move) -> bool:
        return (
            m.goal is not None
            and world.uncertain(m.head, m.goal)
            and m.node in world.good_moves(m.head, m.goal)
        )

    return ok


def check_vs_commit(
    sequences: Sequence[Words], tokenizer=None, world: World | None = None, offset: int = 0
) -> Contrast:
    """Node tokens of moves followed by a check that passes (``> nX WAIT ... OK``) vs by ``;``.

    Args:
        sequences: traces as strings, word lists, or token ids (with ``tokenizer``).
        tokenizer: reads token ids (the organism's :class:`WordTokenizer`).
        world: when given, both sides keep only good moves at uncertain steps (where training
            places checks), so that certain steps and wrong moves do not enter either side.
        offset: added to each position (``-1``: the ``>`` before the node token); positions
            falling outside the sequence are dropped.

    Returns:
        A :class:`Contrast`: positive = checked moves, negative = moves closed at once.

    Raises:
        EmptyContrastError: a side with no position.
        ContrastError: ids without a tokenizer, or an offset that is not an int.

    Example:
        >>> seqs = ["Q n0 n3 T n0 : n1 n2 > n1 WAIT CHECK n1 : n3 D 1 OK ; n1 : n3 > n3 ;"]
        >>> c = check_vs_commit(seqs)
        >>> c.positive, c.negative
        (((9,),), ((23,),))
    """
    _check_offset(offset)
    extra = _at_uncertain_good_move(world) if world is not None else (lambda m: True)
    return _build(
        "check_vs_commit",
        sequences,
        tokenizer,
        None if world is None else world.n_nodes,
        offset,
        lambda m: m.next_word == "WAIT" and m.verdict == "OK" and extra(m),
        lambda m: m.next_word == ";" and extra(m),
        {
            "positive": "moves followed by WAIT ... OK",
            "negative": "moves followed by ;",
            "filter": "good moves at uncertain steps" if world is not None else "none",
            "world": world.hash() if world is not None else None,
        },
    )


def wrong_vs_good(
    sequences: Sequence[Words],
    tokenizer=None,
    world: World | None = None,
    by: Literal["verdict", "world"] = "verdict",
    offset: int = 0,
) -> Contrast:
    """Node tokens of wrong moves vs good moves.

    Args:
        sequences: traces as strings, word lists, or token ids (with ``tokenizer``).
        tokenizer: reads token ids.
        world: the world; required for ``by="world"``.
        by: ``verdict``: the trace's own check says ``BAD`` vs ``OK`` (both sides followed by
            ``WAIT``); ``world``: the node is off every shortest path to the goal vs on one
            (:meth:`World.good_moves`), both at uncertain steps (:meth:`World.uncertain`: a
            wrong neighbour exists and the goal is two or more moves away).
        offset: added to each position (see :func:`check_vs_commit`).

    Returns:
        A :class:`Contrast`: positive = wrong moves, negative = good moves.

    Raises:
        EmptyContrastError: a side with no position.
        ContrastError: an unknown ``by``, ``by="world"`` without a world, ids without a tokenizer.

    Example:
        >>> seq = ("Q n0 n5 T n0 : n1 n2 > n2 WAIT CHECK n2 : n4 D 3 BAD BACK > n1 ; "
        ...        "n1 : n3 n4 > n3 WAIT CHECK n3 : n5 D 1 OK ;")
        >>> c = wrong_vs_good([seq])
        >>> c.positive, c.negative
        (((9,),), ((27,),))
    """
    _check_offset(offset)
    if by not in ("verdict", "world"):
        raise ContrastError(f"by={by!r}; expected 'verdict' or 'world'")
    if by == "verdict":
        return _build(
            "wrong_vs_good",
            sequences,
            tokenizer,
            None if world is None else world.n_nodes,
            offset,
            lambda m: m.verdict == "BAD",
            lambda m: m.verdict == "OK",
            {"by": by, "positive": "moves checked BAD", "negative": "moves checked OK", "world": None},
        )
    if world is None:
        raise ContrastError("wrong_vs_good(by='world') needs world= to know the shortest paths")

    def fork(m: Move) -> bool:  # where training places mistakes: a wrong neighbour, goal 2+ moves away
        return m.goal is not None and world.uncertain(m.head, m.goal)

    return _build(
        "wrong_vs_good",
        sequences,
        tokenizer,
        None if world is None else world.n_nodes,
        offset,
        lambda m: fork(m) and m.node not in world.good_moves(m.head, m.goal),
        lambda m: fork(m) and m.node in world.good_moves(m.head, m.goal),
        {
            "by": by,
            "positive": "moves off every shortest path",
            "negative": "moves on a shortest path",
            "world": world.hash(),
        },
    )


def reflection_vs_execution(
    sequences: Sequence[Words], tokenizer=None, world: World | None = None, offset: int = 0
) -> Contrast:
    """Thought boundaries followed by a reflection or transition vs by execution (SEAL's contrast).

    A trace is a run of thoughts: execution (a step ``n5 : n9 n17 > n17``, the answer
    ``A n5 n17 n22 E``), reflection (a check ``WAIT CHECK n17 : n4 n22 D 1 OK``) and transition
    (``BAD BACK > n9``, leaving a wrong move for another). The boundary used is the node token
    closing a forward move (``> n17``): it ends an execution thought, and the model reading it
    decides what comes next. Exactly these tokens:

    - positive: the node token of a forward move followed by ``WAIT`` (the next thought is a
      reflection; when its verdict is ``BAD`` the reflection turns into the transition
      ``BAD BACK``: in this grammar a transition is only ever reached through a check, so this
      node token is where the model first commits to it);
    - negative: the node token of a forward move followed by ``;`` (the next thought is
      execution: the next step ``n17 : ...`` or the answer ``A ...``).

    Never used: the move after ``BAD BACK`` (a transition's own move, never followed by a check
    in training), a move at the sequence's end, and the ``;`` closing a step (after it training
    always puts execution, so it has no positive side). Unlike :func:`check_vs_commit`, checks
    that end ``BAD`` count as positives; with ``world`` this keeps wrong moves too, and since
    training follows every mistake with a check, the positive side then also carries "this move
    is wrong" (SEAL's reflection/transition set mixes the same two things).

    Args:
        sequences: traces as strings, word lists, or token ids (with ``tokenizer``).
        tokenizer: reads token ids (the organism's :class:`WordTokenizer`).
        world: when given, both sides keep only moves at uncertain steps (:meth:`World.uncertain`:
            where training places checks and mistakes), so that certain steps, which training
            always follows by execution, do not fill the negative side.
        offset: added to each position (see :func:`check_vs_commit`).

    Returns:
        A :class:`Contrast`: positive = boundaries before a reflection (or transition), negative =
        boundaries before execution; ``meta["n_transition"]`` counts the positives whose check
        ends ``BAD``.

    Raises:
        EmptyContrastError: a side with no position.
        ContrastError: ids without a tokenizer, or an offset that is not an int.

    Example:
        >>> seq = ("Q n0 n5 T n0 : n1 n2 > n2 WAIT CHECK n2 : n4 D 3 BAD BACK > n1 ; "
        ...        "n1 : n3 n4 > n3 WAIT CHECK n3 : n5 D 1 OK ; n3 : n5 > n5 ; A n0 n1 n3 n5 E")
        >>> c = reflection_vs_execution([seq])
        >>> c.positive, c.negative, c.meta["n_transition"]
        (((9, 27),), ((41,),), 1)
    """
    _check_offset(offset)
    n_nodes = None if world is None else world.n_nodes

    def at(m: Move) -> bool:
        return world is None or (m.goal is not None and world.uncertain(m.head, m.goal))

    c = _build(
        "reflection_vs_execution",
        sequences,
        tokenizer,
        n_nodes,
        offset,
        lambda m: m.next_word == "WAIT" and at(m),
        lambda m: m.next_word == ";" and at(m),
        {
            "positive": "node token of a move followed by WAIT (a reflection; verdict BAD: a transition)",
            "negative": "node token of a move followed by ; (execution: the next step or the answer)",
            "filter": "moves at uncertain steps" if world is not None else "none",
            "world": world.hash() if world is not None else None,
        },
    )
    transitions = 0
    for seq in sequences:
        moves = parse_moves(sequence_words(seq, tokenizer), n_nodes)
        transitions += sum(
            1 for m in moves if not m.correction and m.node is not None and m.verdict == "BAD" and at(m)
        )
    return Contrast(c.name, c.positive, c.negative, {**c.meta, "n_transition": transitions})


def training_traces(world: World, n: int, seed: int = 0, recipe: DataRecipe | None = None) -> list[list[str]]:
    """``n`` chain-of-thought examples (prompt and trace) drawn as the zoo's data draws them.

    Args:
        world: the world.
        n: how many.
        seed: seed of the draw.
        recipe: check and mistake rates and the split (default :class:`DataRecipe` ``()``,
            base's rates on ``train``).

    Raises:
        ContrastError: ``n`` below 1.

    Example:
        >>> from interp.organism.world import make_world
        >>> ts = training_traces(make_world(), 3)
        >>> len(ts), ts[0][0], ts[0][3]
        (3, 'Q', 'T')
    """
    import numpy as np

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ContrastError(f"n={n!r}; expected a positive number of traces")
    r = recipe or DataRecipe()
    rng = np.random.default_rng(seed)
    pairs = world.split(r.split)
    out = []
    for _ in range(n):
        s, g = pairs[int(rng.integers(len(pairs)))]
        ex = cot_example(world, s, g, rng, r.check_rate, r.mistake_rate, None, r.imitate_mistakes)
        out.append(list(ex.words))
    return out


def model_traces(
    model,
    tokenizer,
    problems: Sequence[tuple[int, int]],
    max_new_tokens: int = 120,
    temperature: float = 0.0,
    generator=None,
) -> list[list[str]]:
    """A model's own traces: each problem's prompt ``Q s g T`` followed by its response.

    Args:
        model: the organism (a :class:`interp.models.Model` or ``HookedTransformer``).
        tokenizer: its :class:`WordTokenizer`.
        problems: ``(start, goal)`` pairs.
        max_new_tokens: response budget.
        temperature: 0 for greedy, else sampled.
        generator: a ``torch.Generator`` for sampling.
    """
    from interp.organism.evaluate import respond

    prompts = [cot_prompt(s, g) for s, g in problems]
    module = getattr(model, "module", model)
    outs = respond(module, tokenizer, prompts, max_new_tokens, temperature, generator=generator)
    return [p.split() + o for p, o in zip(prompts, outs, strict=True)]


def encode_words(sequences: Sequence[Words], tokenizer) -> list[list[int]]:
    """Token ids of each sequence (word ``i`` is token ``i``), for the activation pass.

    Example:
        >>> from interp.organism.tokenizer import WordTokenizer, organism_vocab
        >>> tok = WordTokenizer(organism_vocab(4))
        >>> encode_words(["Q n0 n3 T"], tok) == [tok.encode("Q n0 n3 T")]
        True
    """
    return [tokenizer.encode(" ".join(sequence_words(s, tokenizer))) for s in sequences]
