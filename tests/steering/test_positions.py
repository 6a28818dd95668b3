"""steering.positions: selectors on the tokens seen so far, steering the same with and without a KV cache.

Oracles: masks computed by hand on small id tensors, and the no-cache recomputation (each prompt
alone, the whole sequence run again under the same ``steer_at`` for every new token).
"""

import pytest
import torch

from interp.errors import InterpError, ModelMismatchError
from interp.generation import IncrementalDecoder, generate
from interp.hooks import add_vector
from interp.models import as_model
from steering.positions import (
    AfterPattern,
    AfterTokens,
    And,
    AtTokens,
    BeforeTokens,
    Every,
    NonCausalSelectorError,
    Not,
    Or,
    SelectorError,
    TrackingError,
    record_at,
    steer_at,
    track_tokens,
)
from tests.decoding_oracles import PAD, decode_logits, no_cache_greedy

HOOK = "blocks.0.hook_resid_post"
PROMPTS = [[2, 5, 7], [3, 9, 11, 20, 4], [4, 4, 12], [10, 30, 2, 8, 9, 6, 5], [6, 2]]  # left-padded
N_NEW = 8
# Fires on some prompt and some generated positions, through Or / And / Not and lookback windows.
SELECTOR = Or(AfterPattern([range(2, 40), range(20, 64)]), AfterTokens(range(40, 64), within=2)) & Not(
    AtTokens([5, 9])
)

# Hand-computed masks. Row 0 is left-padded with id 7, which is also a marker: pads never count.
HISTORY = torch.tensor([[7, 7, 3, 5, 7, 4, 9], [7, 3, 4, 7, 4, 9, 2]])
PADS = torch.tensor([[1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
CASES = {
    "Every": (Every(), [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]),
    "AtTokens": (AtTokens([7]), [[0, 0, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0, 0]]),
    "AfterTokens within 1": (AfterTokens([7]), [[0, 0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 1, 0, 0]]),
    "AfterTokens within 2": (AfterTokens(7, within=2), [[0, 0, 0, 0, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0]]),
    "AfterPattern": (AfterPattern([7, 3]), [[0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]]),
    "AfterPattern within 1": (AfterPattern([7, 3], within=1), [[0] * 7, [0, 1, 1, 0, 0, 0, 0]]),
    "AfterPattern wildcard and set": (
        AfterPattern([None, 4, {9, 2}]),
        [[0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0]],
    ),
    "BeforeTokens": (BeforeTokens([7], within=2), [[0, 0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0]]),
    "Not": (Not(AtTokens([7])), [[0, 0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 1]]),
    "Or": (Or(AtTokens([4]), AtTokens([9])), [[0, 0, 0, 0, 0, 1, 1], [0, 0, 1, 0, 1, 1, 0]]),
    "And": (
        And(AfterTokens([7], within=2), Not(AtTokens([4]))),
        [[0, 0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 1, 0]],
    ),
}
CAUSAL = [name for name, (sel, _) in CASES.items() if sel.causal]


@pytest.mark.parametrize("case", CASES)
def test_masks_equal_hand_computed_ones(case):
    selector, want = CASES[case]
    assert selector.mask(HISTORY, PADS).tolist() == torch.tensor(want, dtype=torch.bool).tolist()


def test_operators_build_the_same_selectors():
    a, b = AtTokens([4]), AfterTokens([7], within=2)
    assert (a | AtTokens([9])) == CASES["Or"][0] and ~AtTokens([7]) == CASES["Not"][0]
    assert torch.equal((b & ~a).mask(HISTORY, PADS), CASES["And"][0].mask(HISTORY, PADS))
    assert AtTokens([9, 4, 4]) == AtTokens((4, 9)) and hash(AtTokens([9, 4])) == hash(AtTokens([4, 9]))
    assert not BeforeTokens([1]).causal and not (Every() & BeforeTokens([1])).causal and SELECTOR.causal


@pytest.mark.parametrize("case", CAUSAL)
def test_token_by_token_equals_the_full_mask(case):
    """A tracker fed one token per call (with the cache's length) picks what the full pass picks."""
    selector, want = CASES[case]
    from steering.positions import TokenTracker

    tracker = TokenTracker()
    mask = (~PADS).long()
    tracker.observe(HISTORY[:, :1], mask[:, :1], cache_length=0, cached=True)
    got = [tracker.select(selector)]
    for t in range(1, HISTORY.shape[1]):
        tracker.observe(HISTORY[:, t : t + 1], mask[:, : t + 1], cache_length=t, cached=True)
        got.append(tracker.select(selector))
    assert torch.cat(got, 1).tolist() == torch.tensor(want, dtype=torch.bool).tolist()
    assert torch.equal(tracker.history, HISTORY) and torch.equal(tracker.pad, PADS)


BAD = {
    "no ids": (lambda: AtTokens([]), "ids=[] is not usable"),
    "negative id": (lambda: AfterTokens([3, -1]), "ids=[3, -1] is not usable"),
    "within 0": (lambda: AfterTokens([3], within=0), "within=0 is not usable; expected an integer >= 1"),
    "before within -1": (lambda: BeforeTokens([3], within=-1), "within=-1 is not usable"),
    "empty pattern": (lambda: AfterPattern([]), "pattern=[] is not usable"),
    "wildcards only": (lambda: AfterPattern([None, None]), "expected at least one token id"),
    "negative within": (
        lambda: AfterPattern([3], within=-2),
        "within=-2 is not usable; expected an integer >= 0",
    ),
    "And of one": (lambda: And(AtTokens([3])), "expected selectors (two or more"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_selectors_refused_in_one_line(case):
    build, message = BAD[case]
    with pytest.raises(SelectorError, match=message.replace("[", r"\[").replace("(", r"\(")) as err:
        build()
    assert isinstance(err.value, InterpError) and "\n" not in str(err.value)


def test_bad_steer_arguments_refused_before_any_hook(hooked, hook_counts):
    v = torch.ones(hooked.cfg.d_model)
    with pytest.raises(SelectorError, match="scale=nan is not usable"):
        with steer_at(hooked, HOOK, v, Every(), scale=float("nan")):
            pass
    with pytest.raises(ModelMismatchError, match="vector of size 5 cannot be added"):
        with steer_at(hooked, HOOK, torch.ones(5), Every()):
            hooked(torch.tensor([[2, 3]]))
    assert hook_counts(hooked) == {}


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_cached_generation_equals_the_no_cache_recomputation(request, family, native_calls, hook_counts):
    model = request.getfixturevalue(family)
    v = torch.randn(as_model(model).d_model, generator=torch.Generator().manual_seed(0)) * 8
    plain = generate(model, PROMPTS, N_NEW, pad_id=PAD)
    with steer_at(model, HOOK, v, SELECTOR) as steer:
        tokens = generate(model, PROMPTS, N_NEW, pad_id=PAD)
    with steer_at(model, HOOK, v, SELECTOR):
        logits = decode_logits(model, PROMPTS, N_NEW)
        oracle, oracle_logits = no_cache_greedy(model, PROMPTS, N_NEW)
    assert tokens == oracle == logits.argmax(-1).T.tolist()
    torch.testing.assert_close(logits, oracle_logits, atol=1e-4, rtol=1e-4)
    assert tokens != plain  # the steering changed the continuations
    # the selector picked some generated positions and skipped others
    fed = [p + t[:-1] for p, t in zip(PROMPTS, tokens, strict=True)]
    gen_picks = [
        SELECTOR.mask(torch.tensor([f]))[0, len(p) :].tolist() for f, p in zip(fed, PROMPTS, strict=True)
    ]
    assert any(any(g) for g in gen_picks) and not all(all(g) for g in gen_picks)
    # the share counts every pass of the body: the prompt pass and N_NEW - 1 cached steps
    picked = sum(int(SELECTOR.mask(torch.tensor([f])).sum()) for f in fed)
    assert (steer.stats.selected, steer.stats.real) == (picked, sum(map(len, fed)))
    assert steer.stats.calls == N_NEW and 0 < steer.stats.share < 1
    if family == "llama":
        assert native_calls and all(native_calls)  # the tracker's hooks leave the native path open
    assert hook_counts(model) == {}


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_a_selector_that_picks_nothing_equals_unsteered(request, family):
    model = request.getfixturevalue(family)
    v = torch.randn(as_model(model).d_model, generator=torch.Generator().manual_seed(1)) * 8
    plain_tokens, plain_logits = (
        generate(model, PROMPTS, N_NEW, pad_id=PAD),
        decode_logits(model, PROMPTS, N_NEW),
    )
    with steer_at(model, HOOK, v, And(AtTokens([4]), Not(AtTokens([4])))) as steer:
        tokens, logits = generate(model, PROMPTS, N_NEW, pad_id=PAD), decode_logits(model, PROMPTS, N_NEW)
    assert tokens == plain_tokens and torch.equal(logits, plain_logits)
    assert steer.stats.selected == 0 and steer.stats.share == 0.0


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_every_equals_add_vector(request, family):
    model = request.getfixturevalue(family)
    v = torch.randn(as_model(model).d_model, generator=torch.Generator().manual_seed(2)) * 8
    with add_vector(model, HOOK, v, scale=0.5):
        want_tokens, want_logits = (
            generate(model, PROMPTS, N_NEW, pad_id=PAD),
            decode_logits(model, PROMPTS, N_NEW),
        )
    with steer_at(model, HOOK, v, Every(), scale=0.5) as steer:
        tokens, logits = generate(model, PROMPTS, N_NEW, pad_id=PAD), decode_logits(model, PROMPTS, N_NEW)
    assert tokens == want_tokens
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-5)  # pads differ, never attended
    unpadded = [[2, 5, 7, 9], [3, 3, 8, 1]]
    with torch.no_grad():
        with add_vector(model, HOOK, v):
            want = as_model(model).module(torch.tensor(unpadded))
        with steer_at(model, HOOK, v, Every()):
            got = as_model(model).module(torch.tensor(unpadded))
    assert torch.equal(got, want)
    assert steer.stats.share == 1.0


def test_padded_full_pass_counts_and_skips_pads(hooked):
    tokens = torch.tensor([[1, 1, 5, 3, 5], [2, 3, 5, 7, 3]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    v = (
        torch.randn(hooked.cfg.d_model, generator=torch.Generator().manual_seed(3)) * 3
    )  # not ones: LN removes those
    with torch.no_grad():
        plain = hooked(tokens, attention_mask=mask)
        with (  # two hooks: the share still counts each pass once
            steer_at(hooked, "blocks.*.hook_resid_post", v, AtTokens([5, 1])) as steer,
            record_at(hooked, HOOK, Every()) as rec,
        ):
            steered = hooked(tokens, attention_mask=mask)
    assert (steer.stats.selected, steer.stats.real, steer.stats.calls) == (3, 8, 1)
    assert str(steer.stats) == "3 of 8 positions selected (37.5%)"
    assert rec.rows.tolist() == [0, 0, 0, 1, 1, 1, 1, 1] and rec.positions.tolist() == [
        2,
        3,
        4,
        0,
        1,
        2,
        3,
        4,
    ]
    assert rec[HOOK].shape == (8, hooked.cfg.d_model)
    # row 0 is unchanged before its first 5 (pad 1s are not picked, though 1 is in the set)
    torch.testing.assert_close(steered[0, :2], plain[0, :2])
    assert not torch.allclose(steered[0, 2], plain[0, 2])


def test_look_ahead_selector_refused_in_cached_decoding_allowed_on_full_pass(hooked, llama, hook_counts):
    before = BeforeTokens([3], within=2)
    for model in (hooked, llama):
        v = torch.ones(as_model(model).d_model)
        with pytest.raises(
            NonCausalSelectorError, match=r"BeforeTokens\(ids=\(3,\), within=2\) looks at later"
        ) as err:
            with steer_at(model, HOOK, v, before):
                generate(model, PROMPTS, 3, pad_id=PAD)
        assert "\n" not in str(err.value)
        assert hook_counts(model) == {}
    tokens = torch.tensor([[2, 5, 3, 7, 9, 3]])
    with torch.no_grad(), record_at(hooked, HOOK, before) as rec, record_at(hooked, HOOK, Every()) as full:
        hooked(tokens)
    assert rec.positions.tolist() == [0, 1, 3, 4]
    torch.testing.assert_close(rec[HOOK], full[HOOK][[0, 1, 3, 4]])


def test_record_at_over_cached_generation_equals_the_full_pass(llama):
    """What record_at keeps over a prompt pass and cached steps is what one full pass gives there."""
    prompt = [2, 5, 7, 41, 3]
    sel = AfterTokens(range(40, 64), within=2) | AtTokens([2])
    with record_at(llama, HOOK, sel) as rec:
        out = generate(llama, [prompt], 6)[0]
    fed = torch.tensor([prompt + out[:-1]])
    with torch.no_grad(), record_at(llama, HOOK, sel) as full:
        as_model(llama).module(fed)
    assert rec.positions.tolist() == full.positions.tolist() == sel.mask(fed)[0].nonzero().flatten().tolist()
    torch.testing.assert_close(rec[HOOK], full[HOOK], atol=1e-5, rtol=1e-5)


def test_one_token_prompts_after_a_batch_of_the_same_size_start_a_new_history(hooked, llama):
    for model in (hooked, llama):
        with track_tokens(model) as tracker:
            first = generate(model, [[5], [6]], 3, pad_id=PAD)
            second = generate(model, [[7], [8]], 3, pad_id=PAD)
        want = [[7] + second[0][:2], [8] + second[1][:2]]
        assert tracker.history.tolist() == want, first
        assert tracker.n_new == 1 and tracker.calls == 6


def test_rule_of_thumb_without_a_cache_and_reset():
    from steering.positions import TokenTracker

    t = TokenTracker()
    t.observe(torch.tensor([[4, 5, 6], [7, 8, 9]]))
    t.observe(torch.tensor([[1], [2]]))  # one position: appended, a cached step
    assert t.history.tolist() == [[4, 5, 6, 1], [7, 8, 9, 2]] and t.n_new == 1
    t.observe(torch.tensor([[3]]))  # batch size changed: a new history
    assert t.history.tolist() == [[3]]
    t.observe(torch.tensor([[2]]))  # ambiguous: taken as a step
    assert t.history.tolist() == [[3, 2]]
    t.reset()
    t.observe(torch.tensor([[2]]))  # after reset(): a one-token prompt
    assert t.history.tolist() == [[2]]
    t.observe(torch.tensor([[1, 2], [3, 4]]), attention_mask=torch.tensor([[0, 1], [1, 1]]))
    assert t.pad.tolist() == [[True, False], [False, False]]


def test_tracking_begun_after_the_prompt_pass_is_refused(hooked, llama, hook_counts):
    for model in (hooked, llama):
        dec = IncrementalDecoder(model, PROMPTS, pad_id=PAD)
        with pytest.raises(
            TrackingError, match="cache holds 7 positions of 5 rows but the token tracker saw"
        ):
            with steer_at(model, HOOK, torch.ones(as_model(model).d_model), Every()):
                dec.advance(dec.logits.argmax(-1))
        assert hook_counts(model) == {}


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_hooks_and_tracker_removed_after_an_exception(request, family, hook_counts):
    model = request.getfixturevalue(family)
    module = as_model(model).module
    v = torch.ones(as_model(model).d_model)
    with pytest.raises(RuntimeError, match="body failed"):
        with steer_at(model, HOOK, v, AtTokens([3])):
            generate(model, PROMPTS, 2, pad_id=PAD)
            raise RuntimeError("body failed")
    with pytest.raises(RuntimeError, match="body failed"):
        with record_at(model, "blocks.*.hook_resid_pre", Every()), track_tokens(model):
            raise RuntimeError("body failed")
    assert hook_counts(model) == {}
    embed = (
        module.embed
        if family == "hooked"
        else module.original_model.get_input_embeddings().original_component
    )
    top = module if family == "hooked" else module.original_model
    assert not embed._forward_pre_hooks and not any(
        getattr(h, "__self__", None).__class__.__name__ == "TokenTracker"
        for h in top._forward_pre_hooks.values()
    )


def brute_force(kind, ids, within, history, pads):
    """The definition, position by position, in plain Python."""
    rows = []
    for h, p in zip(history.tolist(), pads.tolist(), strict=True):
        n, hit = len(h), [x in ids and not q for x, q in zip(h, p, strict=True)]
        row = []
        for t in range(n):
            if kind == "after":
                pick = any(hit[s] for s in range(max(0, t - within), t))
            elif kind == "before":
                pick = any(hit[s] for s in range(t + 1, min(n, t + within + 1)))
            else:  # a pattern (ids[0], any token, ids[1]) ending at t or up to `within - 1` before
                pick = any(
                    s >= 2 and h[s - 2] == ids[0] and h[s] == ids[1] and not any(p[s - 2 : s + 1])
                    for s in range(max(0, t - within + 1), t + 1)
                )
            row.append(pick and not p[t])
        rows.append(row)
    return rows


@pytest.mark.parametrize("within", [1, 3, 7, 8, 20])  # short windows shift, long ones count
def test_windows_and_patterns_equal_a_brute_force_definition(within):
    g = torch.Generator().manual_seed(within)
    for n in (1, 2, 3, 9, 30):
        history = torch.randint(0, 6, (3, n), generator=g)
        pads = torch.arange(n)[None] < torch.tensor([[0], [min(2, n - 1)], [n - 1]])  # left padding
        sels = {
            "after": AfterTokens([2, 3], within=within),
            "before": BeforeTokens([2, 3], within=within),
            "pattern": AfterPattern([2, None, 3], within=within - 1),
        }
        for kind, sel in sels.items():
            assert sel.mask(history, pads).tolist() == brute_force(kind, (2, 3), within, history, pads), (
                kind,
                n,
            )


def test_ids_beyond_any_vocabulary_are_matched_without_a_table():
    history = torch.tensor([[3, 1 << 30, 5]])
    assert AtTokens([1 << 30, 5]).mask(history).tolist() == [[False, True, True]]
