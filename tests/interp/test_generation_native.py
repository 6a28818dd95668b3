"""interp.native_hooks: decoding an hf: model on its plain Hugging Face modules, hooks served there.

Oracles: the bridge path (the same decoder with ``native_step`` switched off) and the no-cache
loop (the whole sequence recomputed through the bridge's forward, hooks active, for every token).
"""

import logging

import pytest
import torch

from interp import generation, native_hooks
from interp.generation import IncrementalDecoder, generate
from interp.hooks import add_vector, hooks, patch, record
from interp.models import as_model

PROMPTS = [[2, 5, 7], [3, 9, 11, 20], [4, 4, 4], [10, 30, 2, 8, 9], [6]]  # unequal: left-padded


def no_cache_greedy(model, prompts, n):
    """Each prompt alone, the whole sequence through the bridge's forward for every new token."""
    out = []
    for p in prompts:
        seq = list(p)
        for _ in range(n):
            with torch.no_grad():
                seq.append(int(as_model(model).module(torch.tensor([seq]))[0, -1].argmax()))
        out.append(seq[len(p) :])
    return out


def decode_logits(model, prompts, steps):
    """The logits of every step of a greedy IncrementalDecoder, stacked ``[step, batch, d_vocab]``."""
    dec = IncrementalDecoder(model, prompts, pad_id=1)
    out = [dec.logits]
    for _ in range(steps):
        out.append(dec.advance(dec.logits.argmax(-1)))
    return torch.stack(out)


def both_paths(monkeypatch, fn):
    """``fn()`` on the native path, then on the bridge path."""
    native = fn()
    with monkeypatch.context() as m:
        m.setattr(generation, "native_step", lambda *args: None)
        bridge = fn()
    return native, bridge


STEERS = {
    "none": lambda m: hooks(m, {}),
    "add_vector at resid_post": lambda m: add_vector(
        m, "blocks.0.hook_resid_post", torch.randn(m.d_model, generator=torch.Generator().manual_seed(0)) * 20
    ),
    "patch at hook_mlp_out": lambda m: patch(m, {"blocks.1.hook_mlp_out": lambda a: 3.0 * a + 0.5}),
}


@pytest.mark.parametrize("steer", STEERS)
def test_native_equals_bridge_and_the_no_cache_loop(llama, monkeypatch, native_calls, steer):
    with STEERS[steer](llama):
        tokens, bridge_tokens = both_paths(monkeypatch, lambda: generate(llama, PROMPTS, 6))
        logits, bridge_logits = both_paths(monkeypatch, lambda: decode_logits(llama, PROMPTS, 5))
        oracle = no_cache_greedy(llama, PROMPTS, 6)
        one_by_one = generate(llama, PROMPTS, 6, batch_size=1)  # batch 1: no padding
    assert native_calls and all(native_calls)  # every step of the native runs ran natively
    assert tokens == bridge_tokens == oracle == one_by_one
    torch.testing.assert_close(logits, bridge_logits, atol=1e-5, rtol=1e-5)
    if steer != "none":
        assert tokens != generate(llama, PROMPTS, 6)  # the hook changed something


def test_record_at_resid_pre_equals_the_bridge_path(llama, monkeypatch, native_calls):
    def run():
        dec = IncrementalDecoder(llama, PROMPTS, pad_id=1)
        with record(llama, "blocks.*.hook_resid_pre") as acts:
            dec.advance(dec.logits.argmax(-1))
        step = dict(acts)
        with record(llama, "blocks.*.hook_resid_pre") as acts:
            IncrementalDecoder(llama, PROMPTS, pad_id=1)
        return step, dict(acts)

    (step, prompt), (bridge_step, bridge_prompt) = both_paths(monkeypatch, run)
    assert sorted(step) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    for name in step:
        assert step[name].shape == (len(PROMPTS), 1, llama.d_model)
        assert prompt[name].shape == (len(PROMPTS), 5, llama.d_model)  # left padding included
        torch.testing.assert_close(step[name], bridge_step[name], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(prompt[name], bridge_prompt[name], atol=1e-6, rtol=1e-6)
    assert all(native_calls[:2])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_every_native_site_sees_and_replaces_what_the_bridge_does(request, family):
    model = request.getfixturevalue(family)
    bridge = model.module
    plan = native_hooks._plan(bridge)
    assert not isinstance(plan, str), plan
    names = sorted({point.name for point, _, _ in plan.sites.values()})
    common = {"blocks.0.hook_out", "blocks.1.hook_in", "blocks.0.mlp.hook_out", "blocks.1.attn.hook_out"}
    assert common <= set(names)
    tokens = torch.tensor([[1, 1, 5, 9, 3, 7], [4, 8, 2, 6, 3, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad(), record(bridge, names) as seen:
        bridge(tokens, attention_mask=mask)
    with torch.no_grad(), record(bridge, names) as native_seen:
        logits, _ = native_hooks.native_step(bridge, tokens, mask, None)
    assert sorted(native_seen) == sorted(seen) == names
    for name in names:  # the unembedding sees the last position only on the native path
        width = native_seen[name].shape[1]
        torch.testing.assert_close(native_seen[name], seen[name][:, -width:], atol=1e-5, rtol=1e-5)
    g = torch.Generator().manual_seed(1)
    for name in names:
        vec = torch.randn(native_seen[name].shape[-1], generator=g)
        with torch.no_grad(), add_vector(bridge, name, vec):
            want = bridge(tokens, attention_mask=mask)[:, -1]
            got = native_hooks.native_step(bridge, tokens, mask, None)[0][:, -1]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=name)


def test_a_point_without_native_equivalent_takes_the_bridge_path(llama, native_calls, caplog):
    vec = torch.randn(llama.d_model, generator=torch.Generator().manual_seed(3)) * 20
    patterns = []
    with add_vector(llama, "blocks.0.hook_resid_post", vec):
        oracle = no_cache_greedy(llama, PROMPTS, 5)
        with hooks(llama, {"blocks.0.attn.hook_pattern": lambda a, n: patterns.append(a.shape)}):
            assert sorted(native_hooks.hooked_points(llama.module)) == [
                "blocks.0.attn.hook_pattern",
                "blocks.0.hook_out",
            ]
            with caplog.at_level(logging.DEBUG, logger="interp.native_hooks"):
                out = generate(llama, PROMPTS, 5)
    assert out == oracle
    assert native_calls and not any(native_calls)
    assert len(patterns) == 5  # the prompt pass and 4 cached steps, all through the bridge
    assert "blocks.0.attn.hook_pattern carries a hook and has no native equivalent" in caplog.text


def test_paths_can_alternate_within_one_decoder(llama, monkeypatch, native_calls):
    def run():
        dec = IncrementalDecoder(llama, PROMPTS, pad_id=1)
        out = [dec.logits]
        for step in range(4):
            if step == 1:  # one step through the bridge, on the cache the native steps wrote
                with hooks(llama, {"blocks.1.attn.hook_pattern": lambda a, n: None}):
                    out.append(dec.advance(out[-1].argmax(-1)))
            else:
                out.append(dec.advance(out[-1].argmax(-1)))
        return torch.stack(out)

    mixed, bridge = both_paths(monkeypatch, run)
    assert native_calls[:5] == [True, True, False, True, True]
    torch.testing.assert_close(mixed, bridge, atol=1e-5, rtol=1e-5)


def test_a_forward_hook_on_a_bridge_component_takes_the_bridge_path(llama, native_calls):
    block = llama.module.blocks[0]
    handle = block.register_forward_hook(lambda m, a, out: out * 1.5)
    try:
        out = generate(llama, PROMPTS[:2], 4)
        oracle = no_cache_greedy(llama, PROMPTS[:2], 4)
    finally:
        handle.remove()
    assert out == oracle and not any(native_calls)


def test_hooks_and_modules_restored_after_generation_and_on_error(llama, hook_counts):
    bridge = llama.module
    layers = bridge.original_model.model.layers
    before = [type(m).__name__ for m in layers]
    seen_types = []

    def fn(act, name):
        seen_types.append(type(layers[0]).__name__)  # what the tree holds while the hook runs
        if len(seen_types) == 3:
            raise RuntimeError("hook failed on purpose")

    with pytest.raises(RuntimeError, match="on purpose"):
        with hooks(llama, {"blocks.1.hook_resid_post": fn}):
            generate(llama, PROMPTS, 6)
    assert seen_types == ["LlamaDecoderLayer"] * 3  # it ran natively
    assert [type(m).__name__ for m in layers] == before == ["BlockBridge"] * 2
    assert hook_counts(llama) == {}
    assert native_hooks.hooked_points(bridge) == []
    left = [  # no native hook left on any Hugging Face module
        h.__qualname__
        for m in bridge.original_model.modules()
        for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
        if getattr(h, "__qualname__", "").startswith(("_out_hook", "_in_hook"))
    ]
    assert left == []
    assert generate(llama, PROMPTS, 4) == no_cache_greedy(llama, PROMPTS, 4)
