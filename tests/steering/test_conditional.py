"""steering.conditional: steering only where a gate fires, against masks and the no-cache loop."""

import pytest
import torch

from interp.generation import generate
from interp.hooks import add_vector, record
from interp.models import as_model
from steering.conditional import FeatureGate, GateError, GateOrderError, LinearGate, steer_when
from steering.steering_vector import SteeringVector
from tests.decoding_oracles import PAD, decode_logits, no_cache_greedy

PROMPTS = [[5, 9, 12, 7], [3, 4], [20, 11, 6, 2, 8, 14, 30]]
GATE_HOOK, STEER_HOOK = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


def _d_model(model) -> int:
    return as_model(model).d_model


def _vector(model, seed=0, norm=8.0) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(_d_model(model), generator=g)
    return SteeringVector({STEER_HOOK: v * norm / v.norm()}, {"method": "manual"})


def _half_gate(model, prompt) -> LinearGate:
    """A gate on one random direction, thresholded at its median over a prompt: fires about half the time."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(_d_model(model), generator=g)
    with record(as_model(model), GATE_HOOK) as acts:
        as_model(model).module(torch.tensor([prompt]))
    score = acts[GATE_HOOK][0].float() @ w
    return LinearGate(GATE_HOOK, w, threshold=float(score.median()))


@pytest.fixture(params=["hooked", "llama"])
def model(request):
    return request.getfixturevalue(request.param)


def test_full_pass_equals_add_vector_at_the_gates_own_mask(model):
    prompt = PROMPTS[2]
    gate, vec = _half_gate(model, prompt), _vector(model)
    m = as_model(model)
    tokens = torch.tensor([prompt])
    with record(m, GATE_HOOK) as acts:  # the gate reads an earlier layer, which steering cannot move
        m.module(tokens)
    mask = gate(acts[GATE_HOOK])
    assert 0 < int(mask.sum()) < mask.numel()
    with torch.no_grad(), add_vector(m, STEER_HOOK, vec.directions[STEER_HOOK], positions=mask):
        expected = m.module(tokens)
    with torch.no_grad(), steer_when(m, vec, gate) as stats:
        got = m.module(tokens)
    torch.testing.assert_close(got, expected)
    assert (stats.seen, stats.steered, stats.passes) == (len(prompt), int(mask.sum()), 1)


def test_always_is_add_vector_and_never_is_unsteered(model):
    m, vec, tokens = as_model(model), _vector(model), torch.tensor([PROMPTS[0]])
    d = _d_model(model)
    always = LinearGate(GATE_HOOK, torch.zeros(d), bias=1.0)
    never = LinearGate(GATE_HOOK, torch.zeros(d), bias=-1.0)
    with torch.no_grad():
        plain = m.module(tokens)
        with add_vector(m, STEER_HOOK, vec.directions[STEER_HOOK]):
            steered = m.module(tokens)
        with steer_when(m, vec, always) as s_always:
            got_always = m.module(tokens)
        with steer_when(m, vec, never) as s_never:
            got_never = m.module(tokens)
    torch.testing.assert_close(got_always, steered)
    torch.testing.assert_close(got_never, plain)
    assert s_always.share == 1.0 and s_never.share == 0.0


def test_cached_generation_equals_the_no_cache_recomputation(model):
    gate, vec = _half_gate(model, PROMPTS[2]), _vector(model)
    with steer_when(model, vec, gate) as stats:
        cached = generate(model, PROMPTS, 6, pad_id=PAD)
        cached_logits = decode_logits(model, PROMPTS, 6)
    with steer_when(model, vec, gate):
        ref_tokens, ref_logits = no_cache_greedy(model, PROMPTS, 6)
    assert cached == ref_tokens
    torch.testing.assert_close(cached_logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert 0 < stats.share < 1
    plain = generate(model, PROMPTS, 6, pad_id=PAD)
    assert plain != cached  # the gate fired somewhere that mattered


def test_a_steering_hook_before_the_gate_is_refused_and_hooks_are_removed(hooked):
    m = as_model(hooked)
    late_gate = LinearGate("blocks.1.hook_resid_post", torch.zeros(_d_model(hooked)), bias=1.0)
    early = SteeringVector({"blocks.0.hook_resid_post": torch.ones(_d_model(hooked))}, {"method": "manual"})
    with pytest.raises(GateOrderError, match="'blocks.0.hook_resid_post' ran before the gate's hook"):
        with steer_when(m, early, late_gate):
            m.module(torch.tensor([PROMPTS[0]]))
    assert all(not p._forward_hooks for p in m.hook_points.values())
    assert not m.module._forward_pre_hooks


def test_the_gate_at_the_steering_hook_itself(hooked):
    m, vec = as_model(hooked), _vector(hooked)
    w = torch.zeros(_d_model(hooked))
    w[0] = 1.0
    gate = LinearGate(STEER_HOOK, w, threshold=0.0)
    tokens = torch.tensor([PROMPTS[2]])
    with record(m, STEER_HOOK) as acts, torch.no_grad():
        m.module(tokens)
    mask = acts[STEER_HOOK][..., 0] > 0
    with torch.no_grad(), add_vector(m, STEER_HOOK, vec.directions[STEER_HOOK], positions=mask):
        expected = m.module(tokens)
    with torch.no_grad(), steer_when(m, vec, gate):
        got = m.module(tokens)
    torch.testing.assert_close(got, expected)


def test_a_probe_and_an_sae_feature_as_gates():
    from types import SimpleNamespace

    probe = SimpleNamespace(
        sites=("blocks.0.hook_resid_post",),
        W=torch.tensor([[[0.0, 2.0], [0.0, 0.0]]]),  # class 1 logit = 2 * x0
        b=torch.tensor([[0.0, -1.0]]),
        mean=torch.zeros(1, 2),
        std=torch.ones(1, 2),
    )
    gate = LinearGate.from_probe(probe, "blocks.0.hook_resid_post")
    x = torch.tensor([[[1.0, 0.0], [0.4, 5.0]]])
    assert gate(x).tolist() == [[True, False]]  # margins 2*1-1 = 1 > 0, 2*0.4-1 < 0
    sae = SimpleNamespace(W_dec=torch.eye(2), encode=lambda a: torch.relu(a))
    assert FeatureGate("h", sae, feature=1, threshold=2.0)(x).tolist() == [[False, True]]
    with pytest.raises(GateError, match="the probe has no site 'blocks.9"):
        LinearGate.from_probe(probe, "blocks.9.hook_resid_post")
    with pytest.raises(GateError, match="feature=2; expected an index in 0..1"):
        FeatureGate("h", sae, feature=2)


def test_bad_values_are_refused_in_one_line(hooked):
    d = _d_model(hooked)
    with pytest.raises(GateError, match="threshold=nan"):
        LinearGate(GATE_HOOK, torch.zeros(d), threshold=float("nan"))
    with pytest.raises(GateError, match="scale=inf"):
        with steer_when(hooked, _vector(hooked), LinearGate(GATE_HOOK, torch.zeros(d)), scale=float("inf")):
            pass
    wrong = LinearGate(GATE_HOOK, torch.zeros(d + 1))
    with pytest.raises(GateError, match=f"the gate reads width {d + 1}"):
        with steer_when(hooked, _vector(hooked), wrong):
            as_model(hooked).module(torch.tensor([PROMPTS[0]]))
