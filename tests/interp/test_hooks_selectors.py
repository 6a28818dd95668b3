"""interp.hooks with ``positions=`` a selector: the same in cached generation as in a full recomputation.

Oracles: the no-cache recomputation (each prompt alone, the whole sequence run again under the same
hook for every new token), and the same hook given the selector's mask of a full pass by hand.
"""

import ast
from pathlib import Path

import pytest
import torch

from interp.errors import HookNameError, InterpError, NonCausalSelectorError
from interp.generation import generate
from interp.hooks import ablate, add_vector, patch, record
from interp.models import as_model
from interp.selectors import AfterPattern, AfterTokens, AtTokens, BeforeTokens, Every, Not, Or
from tests.decoding_oracles import PAD, decode_logits, no_cache_greedy

HOOK = "blocks.0.hook_resid_post"
PROMPTS = [[2, 5, 7], [3, 9, 11, 20, 4], [4, 4, 12], [10, 30, 2, 8, 9, 6, 5], [6, 2]]  # left-padded
N_NEW = 6
# Fires on some prompt and some generated positions, with lookback windows (a cached step must
# look back into the prompt to decide).
SELECTOR = Or(AfterPattern([range(2, 40), range(20, 64)]), AfterTokens(range(40, 64), within=2)) & Not(
    AtTokens([5, 9])
)
ROOT = Path(__file__).parents[2]


def _vector(model, seed: int) -> torch.Tensor:
    return torch.randn(as_model(model).d_model, generator=torch.Generator().manual_seed(seed)) * 8


INTERVENTIONS = {  # each a context manager acting at SELECTOR (or at the positions given)
    "add_vector": lambda m, pos: add_vector(m, HOOK, _vector(m, 0), positions=pos),
    "patch tensor": lambda m, pos: patch(m, {HOOK: _vector(m, 1)}, positions=pos),
    "patch callable": lambda m, pos: patch(m, {HOOK: lambda a: -2 * a}, positions=pos),
    "ablate zero": lambda m, pos: ablate(m, HOOK, positions=pos),
}


def tracker_hooks_left(model) -> bool:
    """Whether a token tracker's pre-hooks are still on the embedding or the entry module."""
    module = as_model(model).module
    hf = getattr(module, "original_model", None)
    embed = module.embed if hf is None else hf.get_input_embeddings().original_component
    top = module if hf is None else hf
    return bool(embed._forward_pre_hooks) or any(
        type(getattr(h, "__self__", None)).__name__ == "TokenTracker" for h in top._forward_pre_hooks.values()
    )


@pytest.mark.parametrize("kind", INTERVENTIONS)
@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_cached_generation_with_a_selector_equals_the_no_cache_recomputation(
    request, family, kind, hook_counts
):
    model = request.getfixturevalue(family)
    intervene = INTERVENTIONS[kind]
    plain = decode_logits(model, PROMPTS, N_NEW)
    with intervene(model, SELECTOR):
        tokens = generate(model, PROMPTS, N_NEW, pad_id=PAD)
        logits = decode_logits(model, PROMPTS, N_NEW)
        oracle, oracle_logits = no_cache_greedy(model, PROMPTS, N_NEW)
    assert tokens == oracle == logits.argmax(-1).T.tolist()
    torch.testing.assert_close(logits, oracle_logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits, plain, atol=1e-3)  # the intervention changed something
    # and the selector picked some generated positions, not all of them
    fed = [p + t[:-1] for p, t in zip(PROMPTS, tokens, strict=True)]
    picks = [
        SELECTOR.mask(torch.tensor([f]))[0, len(p) :].tolist() for f, p in zip(fed, PROMPTS, strict=True)
    ]
    assert any(any(g) for g in picks) and not all(all(g) for g in picks)
    assert hook_counts(model) == {} and not tracker_hooks_left(model)


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_add_vector_with_a_selector_equals_steer_at(request, family):
    from steering.positions import steer_at  # the steering wrapper keeps the share besides

    model = request.getfixturevalue(family)
    v = _vector(model, 0)
    with add_vector(model, HOOK, v, scale=0.5, positions=SELECTOR):
        want = decode_logits(model, PROMPTS, N_NEW)
    with steer_at(model, HOOK, v, SELECTOR, scale=0.5) as steer:
        got = decode_logits(model, PROMPTS, N_NEW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert 0 < steer.stats.share < 1


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_record_with_a_selector_equals_the_masked_full_pass_record(request, family):
    model = request.getfixturevalue(family)
    tokens = torch.tensor([[2, 41, 7, 25, 5, 44, 3, 9], [30, 2, 22, 3, 42, 8, 41, 6]])
    sel = SELECTOR | BeforeTokens([3], within=2)  # look-ahead is fine in a pass without a cache
    mask = sel.mask(tokens)
    assert 0 < int(mask.sum()) < mask.numel()
    with torch.no_grad():
        with record(model, "blocks.*.hook_resid_post", positions=sel) as got:
            as_model(model).module(tokens)
        with record(model, "blocks.*.hook_resid_post", positions=mask) as want:
            as_model(model).module(tokens)
    assert sorted(got) == sorted(want) and len(got) == 2
    for name in want:
        assert got[name].shape == (int(mask.sum()), as_model(model).d_model)
        assert torch.equal(got[name], want[name])


def test_record_with_a_selector_skips_padding(hooked):
    tokens = torch.tensor([[5, 5, 5, 3, 5], [2, 3, 5, 7, 3]])
    attention = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        with record(hooked, HOOK, positions=AtTokens([5])) as got:
            hooked(tokens, attention_mask=attention)
        with record(hooked, HOOK, positions=tokens.eq(5) & attention.bool()) as want:
            hooked(tokens, attention_mask=attention)
    assert got[HOOK].shape[0] == 3 and torch.equal(got[HOOK], want[HOOK])  # not the two padded 5s


def test_record_with_a_selector_in_cached_generation_keeps_the_last_step(llama):
    """Like ``record`` with any positions, the last pass fills the dict: here the last cached step."""
    prompt = [2, 5, 7, 41, 3]
    sel = Every()
    with record(llama, HOOK, positions=sel) as got:
        out = generate(llama, [prompt], 5)[0]
    fed = torch.tensor([prompt + out[:-1]])
    with torch.no_grad(), record(llama, HOOK) as full:
        as_model(llama).module(fed)
    assert got[HOOK].shape == (1, as_model(llama).d_model)
    torch.testing.assert_close(got[HOOK], full[HOOK][:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", INTERVENTIONS)
@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_a_selector_touches_only_the_selected_positions(request, family, kind):
    model = request.getfixturevalue(family)
    tokens = torch.tensor([[2, 41, 7, 25, 5, 44, 3, 9], [30, 2, 22, 3, 42, 8, 41, 6]])
    mask = SELECTOR.mask(tokens)
    with torch.no_grad():
        with record(model, HOOK) as plain:
            as_model(model).module(tokens)
        with INTERVENTIONS[kind](model, SELECTOR), record(model, HOOK) as hooked_by_selector:
            as_model(model).module(tokens)
        with INTERVENTIONS[kind](model, mask), record(model, HOOK) as hooked_by_mask:
            as_model(model).module(tokens)
    got, base = hooked_by_selector[HOOK], plain[HOOK]
    assert torch.equal(got[~mask], base[~mask])  # exactly untouched elsewhere
    assert not torch.isclose(got[mask], base[mask]).all(-1).any()  # every selected position changed
    assert torch.equal(got, hooked_by_mask[HOOK])


@pytest.mark.parametrize("kind", INTERVENTIONS)
@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_look_ahead_selector_refused_in_cached_decoding(request, family, kind, hook_counts):
    model = request.getfixturevalue(family)
    before = BeforeTokens([3], within=2)
    message = r"BeforeTokens\(ids=\(3,\), within=2\) looks at later tokens"
    with pytest.raises(NonCausalSelectorError, match=message) as err:
        with INTERVENTIONS[kind](model, before):
            generate(model, PROMPTS, 3, pad_id=PAD)
    assert isinstance(err.value, InterpError) and "\n" not in str(err.value)
    assert "use a causal selector" in str(err.value)
    assert hook_counts(model) == {} and not tracker_hooks_left(model)


def test_look_ahead_selector_refused_when_recording_cached_decoding(llama, hook_counts):
    with pytest.raises(NonCausalSelectorError, match="looks at later tokens"):
        with record(llama, HOOK, positions=BeforeTokens([3])):
            generate(llama, PROMPTS, 3, pad_id=PAD)
    assert hook_counts(llama) == {} and not tracker_hooks_left(llama)


@pytest.mark.parametrize("family", ["hooked", "llama"])
def test_hooks_and_tracker_removed_after_errors(request, family, hook_counts):
    model = request.getfixturevalue(family)
    d = as_model(model).d_model
    with pytest.raises(RuntimeError, match="body failed"):
        with add_vector(model, HOOK, torch.ones(d), positions=AtTokens([3])):
            generate(model, PROMPTS, 2, pad_id=PAD)
            raise RuntimeError("body failed")
    assert hook_counts(model) == {} and not tracker_hooks_left(model)
    with pytest.raises(ValueError, match="vector of size 5 cannot be added"):  # raised inside a hook
        with add_vector(model, HOOK, torch.ones(5), positions=Every()):
            as_model(model).module(torch.tensor([[2, 3]]))
    assert hook_counts(model) == {} and not tracker_hooks_left(model)
    with pytest.raises(HookNameError, match="blocks.0.hook_resid_psot"):  # before anything is registered
        with record(model, "blocks.0.hook_resid_psot", positions=AtTokens([3])):
            pass
    with pytest.raises(HookNameError, match="hook_nothing"):
        with patch(model, {"blocks.*.hook_nothing": torch.zeros(d)}, positions=AtTokens([3])):
            pass
    assert hook_counts(model) == {} and not tracker_hooks_left(model)


def test_integer_and_mask_positions_install_no_tracker(hooked):
    """Only a selector needs the token history: plain positions keep their one hook per point."""
    module = as_model(hooked).module
    with add_vector(hooked, HOOK, torch.ones(32), positions=-1):
        assert not module.embed._forward_pre_hooks
    with add_vector(hooked, HOOK, torch.ones(32), positions=AtTokens([3])):
        assert len(module.embed._forward_pre_hooks) == 1


def _imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_interp_imports_neither_steering_nor_probes():
    """The selectors and the tracker live in interp, which the other packages build on, never the reverse."""
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "interp").rglob("*.py"))
        for name in _imports(path.read_text())
        if name.split(".")[0] in ("steering", "probes", "experiments")
    ]
    assert bad == []
    assert _imports("def f():\n    from steering.positions import steer_at\n") == ["steering.positions"]
