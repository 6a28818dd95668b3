"""The organism's intercept for forced thinking: a ';' is forced only where it closes a move."""

from types import SimpleNamespace

import pytest
import torch

from interp.models import Model
from interp.organism.probing import closes_a_move
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from probes.cot_length import ForceConfig, force_thinking

TOK = WordTokenizer(organism_vocab(24, n_colours=4))


@pytest.mark.parametrize(
    ("so_far", "forced"),
    [
        ("n5 : n9 n17 > n17", True),  # "> n17 ;": the move's own ';'
        ("n5 : n9 n17 > n17 ; n17 : n4 n22 > n22", True),  # a later move
        ("n9 : n1 n3 D 3 BAD BACK > n17", True),  # the corrected move after a retraction
        ("n5 : n9 n17 > n17 WAIT CHECK n17 : n4 n22 D 1 OK", False),  # "OK ;" closes a check
        ("n5 : n9 n17 > n17 WAIT CHECK n17 : n4 n22 D 1", False),  # inside a check
        ("n5 : n9 n17", False),  # a recalled fact, no move yet
        ("n5 : n9 n17 >", False),  # the move's node is still to come
        ("F n5 C > c3", False),  # a colour is not a node
        ("n17", False),
        ("", False),
    ],
)
def test_closes_a_move_on_hand_written_responses(so_far, forced):
    assert closes_a_move(TOK)(TOK.encode(so_far)) is forced


class _Dummy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(n_layers=1, d_model=1, d_vocab=len(TOK), n_ctx=64)
        self.hook_dict: dict = {}


def _ngram_generate(*examples: str, n: int = 6):
    """Greedy decoding of a table of the next word after each context of up to ``n`` words in
    ``examples`` (the earlier example wins a shared context; the longest context that matches is
    used), standing in for generate_continuations."""
    table: dict[tuple[str, ...], str] = {}
    for ex in examples:
        w = ex.split()
        for i in range(1, len(w)):
            for length in range(1, min(n, i) + 1):
                table.setdefault(tuple(w[i - length : i]), w[i])

    def next_word(words: list[str]) -> str:
        for length in range(min(n, len(words)), 0, -1):
            if tuple(words[-length:]) in table:
                return table[tuple(words[-length:])]
        return "E"

    def fake_generate(
        model, prompts, max_new_tokens, temperature=0.0, stop_id=None, forbid=None, generator=None
    ):
        outs = []
        for p in prompts:
            words, o = TOK.words(p), []
            for _ in range(max_new_tokens):
                o.append(TOK.token_id(next_word(words + TOK.words(o))))
                if o[-1] == stop_id:
                    break
            outs.append(o)
        return outs

    return fake_generate


NATURAL = "n0 : n1 > n1 ; n1 : n2 > n2 WAIT CHECK n2 : n0 D 1 OK ; A n0 n1 n2 E"
CHECKED = "n0 : n1 > n1 WAIT CHECK n1 : n2 D 1 OK ; n1 : n2 > n2 WAIT CHECK n2 : n0 D 1 OK ; A n0 n1 n2 E"


def test_forcing_with_it_puts_checks_after_moves_only(monkeypatch):
    # the model's own trace checks its second move only; a check after the first move is what
    # it writes once a "WAIT" is put there (the CHECKED example)
    gen = _ngram_generate(f"Q n0 n2 T {NATURAL}", f"Q n0 n2 T {CHECKED}")
    monkeypatch.setattr("probes.cot_length.generate_continuations", gen)
    model = Model(_Dummy(), TOK, "script")
    cfg = ForceConfig(ks=(0, 1, 2), force="WAIT", stop_word=";", intercept=closes_a_move(TOK))
    prompt = [TOK.encode("Q n0 n2 T")]
    assert TOK.decode(force_thinking(model, prompt, 0, cfg)[0]) == NATURAL
    # one forced WAIT, after the first move; the model writes the check's content itself
    assert TOK.decode(force_thinking(model, prompt, 1, cfg)[0]) == CHECKED
    # no other move closes without a check ("OK ;" is let through): a second forcing adds nothing
    assert TOK.decode(force_thinking(model, prompt, 2, cfg)[0]) == CHECKED
    # without the intercept the ';' after OK is forced too: the format break it prevents
    free = ForceConfig(ks=(2,), force="WAIT", stop_word=";")
    assert "OK WAIT" in TOK.decode(force_thinking(model, prompt, 2, free)[0])


def test_with_the_world_only_moves_at_uncertain_steps_are_forced(world):
    """Reads the goal from the prompt: the move onto the goal, a certain step's move and the
    correction after BAD BACK are let through; a move at an uncertain step is forced."""
    from interp.organism.probing import closes_a_move
    from interp.organism.tokenizer import WordTokenizer, organism_vocab
    from interp.organism.traces import cot_prompt
    from interp.organism.world import node_name

    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    closes = closes_a_move(tok, world)
    s, g = next(p for p in world.split("train") if world.uncertain(*p))
    good = world.good_moves(s, g)[0]
    nb = " ".join(node_name(v) for v in world.neighbours(s))
    step = f"{cot_prompt(s, g)} {node_name(s)} : {nb} > {node_name(good)}"
    assert closes(tok.encode(step))
    assert not closes(
        tok.encode(
            f"{step} WAIT CHECK {node_name(good)} : x D 1 BAD BACK > {node_name(good)}".replace(
                " x ", f" {' '.join(node_name(v) for v in world.neighbours(good))} "
            )
        )
    )
    s1, g1 = next(p for p in world.split("train") if world.dist(*p) == 1)
    nb1 = " ".join(node_name(v) for v in world.neighbours(s1))
    assert not closes(tok.encode(f"{cot_prompt(s1, g1)} {node_name(s1)} : {nb1} > {node_name(g1)}"))
    assert closes_a_move(tok)(tok.encode(f"{cot_prompt(s1, g1)} {node_name(s1)} : {nb1} > {node_name(g1)}"))
