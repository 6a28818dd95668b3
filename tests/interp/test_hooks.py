"""interp.hooks: name resolution, leak-free context managers, and their semantics.

Oracles: Hugging Face ``output_hidden_states`` for the residual stream recorded through
``hf:``; TransformerLens ``run_with_cache`` for a ``HookedTransformer``.
"""

import pytest
import torch
from torch import nn

from interp.errors import HookNameError
from interp.hooks import ablate, add_vector, hooks, patch, record, resolve_hook_names

RESID = "blocks.0.hook_resid_post"


def _tokens(seed: int, batch: int = 2, pos: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, 64, (batch, pos), generator=g)


@pytest.fixture(params=["hooked", "gpt2"])
def any_model(request):
    """A HookedTransformer and an ``hf:`` TransformerBridge: the toolkit must not care which."""
    return request.getfixturevalue(request.param)


def _module(model) -> nn.Module:
    return getattr(model, "module", model)


# --- names ------------------------------------------------------------------------------


def test_glob_expands_in_layer_order(any_model):
    names = resolve_hook_names(any_model, "blocks.*.hook_resid_post")
    assert names == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    both = resolve_hook_names(any_model, ["blocks.1.hook_resid_post", "blocks.*.hook_resid_post"])
    assert both == ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"], "duplicates dropped"


def test_unknown_name_lists_closest_valid_names(any_model):
    with pytest.raises(HookNameError) as exc:
        resolve_hook_names(any_model, "blocks.0.hook_resid_psot")
    msg = str(exc.value)
    assert "'blocks.0.hook_resid_psot'" in msg and "not found" in msg
    assert "blocks.0.hook_resid_post" in msg.split("Closest valid names:")[1]


def test_pattern_matching_nothing_raises(any_model):
    with pytest.raises(HookNameError, match=r"blocks\.\*\.hook_nothing"):
        resolve_hook_names(any_model, "blocks.*.hook_nothing")


# --- aliases and globs (issue 10, item 7) ------------------------------------------------


def _points_of(model, names) -> list[int]:
    points = _module(model).hook_dict
    return [id(points[n]) for n in names]


def test_alias_names_add_the_vector_once(gpt2):
    """The bridge reaches ``blocks.0.hook_resid_post`` also as ``blocks.0.hook_out``."""
    points = _module(gpt2).hook_dict
    assert points[RESID] is points["blocks.0.hook_out"]
    tokens, vec = _tokens(50), torch.randn(32, generator=torch.Generator().manual_seed(1))
    with record(gpt2, RESID) as clean:
        gpt2(tokens)
    with add_vector(gpt2, RESID, vec), record(gpt2, RESID) as once:
        gpt2(tokens)
    with add_vector(gpt2, [RESID, "blocks.0.hook_out"], vec), record(gpt2, RESID) as aliased:
        gpt2(tokens)
    torch.testing.assert_close(aliased[RESID], once[RESID], atol=0, rtol=0)
    torch.testing.assert_close(aliased[RESID] - clean[RESID], vec.expand(2, 7, 32), atol=1e-5, rtol=0)
    assert resolve_hook_names(gpt2, [RESID, "blocks.0.hook_out"]) == [RESID], "the first name given is kept"
    with record(gpt2, ["blocks.0.hook_out", RESID]) as acts:
        gpt2(tokens)
    assert list(acts) == ["blocks.0.hook_out"]


def test_star_stays_within_one_dotted_part(any_model):
    n_layers = 2
    names = resolve_hook_names(any_model, "blocks.*.hook_resid_post")
    assert names == [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    with pytest.raises(HookNameError, match="Closest valid names"):
        resolve_hook_names(any_model, "*.hook_resid_post")  # `*` no longer crosses `blocks.0`


def test_star_on_a_bridge_matches_one_site_per_layer(gpt2):
    names = resolve_hook_names(gpt2, "blocks.*.hook_out")
    assert names == ["blocks.0.hook_out", "blocks.1.hook_out"]  # was 24, attn/mlp/ln hook_out included


def test_double_star_crosses_dots_once_per_point(gpt2):
    names = resolve_hook_names(gpt2, "blocks.**.hook_out")
    assert "blocks.0.attn.hook_out" in names and "blocks.1.mlp.hook_out" in names
    assert len(set(_points_of(gpt2, names))) == len(names) > 2
    assert resolve_hook_names(gpt2, "**hook_resid_post") == [f"blocks.{i}.hook_resid_post" for i in (0, 1)]


def test_a_glob_keeps_the_transformer_lens_name_of_each_point(gpt2):
    names = resolve_hook_names(gpt2, "blocks.0.*")
    assert len(set(_points_of(gpt2, names))) == len(names), "one name per hook point"
    assert {"blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.hook_attn_out"} <= set(names)
    assert not {"blocks.0.hook_in", "blocks.0.hook_out"} & set(names)  # the module-path aliases
    # a point already chosen under one name is not added again by a later pattern
    again = resolve_hook_names(gpt2, ["blocks.0.hook_out", "blocks.*.hook_resid_post"])
    assert again == ["blocks.0.hook_out", "blocks.1.hook_resid_post"]


def test_unknown_double_star_pattern_lists_close_names(gpt2):
    with pytest.raises(HookNameError) as exc:
        resolve_hook_names(gpt2, "blocks.**.hook_resid_psot")
    assert "blocks.0.hook_resid_post" in str(exc.value).split("Closest valid names:")[1]


def test_mean_ablation_finds_means_recorded_under_an_alias(gpt2):
    tokens, given = _tokens(51), torch.arange(32.0)
    with ablate(gpt2, "blocks.0.hook_out", mode="mean", means={RESID: given}), record(gpt2, RESID) as acts:
        gpt2(tokens)
    torch.testing.assert_close(acts[RESID], given.expand(2, 7, 32), atol=0, rtol=0)


def test_two_functions_at_one_point_refused_before_registering(gpt2, hook_counts):
    with pytest.raises(HookNameError, match="are one hook point"):
        with hooks(gpt2, {"blocks.*.hook_resid_post": lambda a, n: a, "blocks.0.hook_out": lambda a, n: -a}):
            pass
    assert hook_counts(_module(gpt2)) == {}
    seen: list[str] = []

    def keep(act, name):
        seen.append(name)

    with hooks(gpt2, {RESID: keep, "blocks.0.hook_out": keep, "blocks.*.hook_out": keep}):
        gpt2(_tokens(0))
    assert seen == [RESID, "blocks.1.hook_out"], "one function per point, under the first name given"


# --- leaks ------------------------------------------------------------------------------

CONTEXTS = {
    "record": lambda m: record(m, "blocks.*.hook_resid_post"),
    "patch": lambda m: patch(m, {RESID: torch.zeros(32)}),
    "patch_fn": lambda m: patch(m, {RESID: lambda a: a * 2}, positions=[0, 2]),
    "add_vector": lambda m: add_vector(m, "blocks.*.hook_resid_pre", torch.ones(32), positions=1),
    "ablate_zero": lambda m: ablate(m, "blocks.*.hook_mlp_out"),
    "ablate_mean": lambda m: ablate(m, "blocks.*.hook_attn_out", mode="mean"),
    "hooks": lambda m: hooks(m, {"blocks.*.hook_resid_mid": lambda a, n: None}),
}


class _Boom(Exception):
    pass


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_hooks_removed_on_exit_and_on_exception(any_model, kind, hook_counts):
    module = _module(any_model)
    assert hook_counts(module) == {}
    with CONTEXTS[kind](any_model):
        assert hook_counts(module) != {}, "the context registered nothing"
        any_model(_tokens(0))
    assert hook_counts(module) == {}

    with pytest.raises(_Boom), CONTEXTS[kind](any_model):
        any_model(_tokens(1))
        raise _Boom
    assert hook_counts(module) == {}


def test_hooks_removed_when_the_forward_pass_raises_inside_a_hook(any_model, hook_counts):
    def explode(act, name):
        raise _Boom(name)

    with pytest.raises(_Boom), hooks(any_model, {"blocks.*.hook_resid_pre": explode}):
        any_model(_tokens(0))
    assert hook_counts(_module(any_model)) == {}
    # and the model still runs normally afterwards
    any_model(_tokens(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda m: record(m, [RESID, "blocks.0.hook_bogus"]),
        lambda m: patch(m, {RESID: torch.zeros(32), "blocks.9.hook_resid_post": torch.zeros(32)}),
        lambda m: add_vector(m, [RESID, "blocks.0.hook_bogus"], torch.ones(32)),
        lambda m: ablate(m, [RESID, "blocks.0.hook_bogus"]),
        lambda m: hooks(m, {RESID: lambda a, n: None, "blocks.0.hook_bogus": lambda a, n: None}),
    ],
    ids=["record", "patch", "add_vector", "ablate", "hooks"],
)
def test_bad_second_name_raises_before_registering_anything(any_model, make, monkeypatch, hook_counts):
    calls = []
    real = nn.Module.register_forward_hook

    def spy(self, *args, **kwargs):
        calls.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "register_forward_hook", spy)
    with pytest.raises(HookNameError), make(any_model):
        pytest.fail("the body must not run")
    assert calls == [], "a hook was registered before the bad name was detected"
    assert hook_counts(_module(any_model)) == {}


def test_registration_failing_midway_removes_earlier_hooks(any_model, monkeypatch, hook_counts):
    points = resolve_hook_names(any_model, "blocks.*.hook_resid_post")
    second = _module(any_model).hook_dict[points[1]]

    def refuse(*args, **kwargs):
        raise RuntimeError("registration failed")

    monkeypatch.setattr(second, "register_forward_hook", refuse)
    with pytest.raises(RuntimeError, match="registration failed"), record(any_model, points):
        pytest.fail("the body must not run")
    monkeypatch.undo()
    assert hook_counts(_module(any_model)) == {}


# --- oracles ----------------------------------------------------------------------------


def _hf_hidden_states(path, cls_name, tokens):
    import transformers

    hf = getattr(transformers, cls_name).from_pretrained(str(path)).eval()
    with torch.no_grad():
        out = hf(tokens, output_hidden_states=True)
    return hf, out


@pytest.mark.parametrize(
    "fixture, cls_name, final_norm",
    [
        ("gpt2", "GPT2LMHeadModel", "transformer.ln_f"),
        ("llama", "LlamaForCausalLM", "model.norm"),
        ("qwen2", "Qwen2ForCausalLM", "model.norm"),
    ],
)
def test_residual_stream_equals_hf_hidden_states(request, fixture, cls_name, final_norm):
    model = request.getfixturevalue(fixture)
    path = model.spec.removeprefix("hf:")
    tokens = _tokens(3, batch=3, pos=11)
    hf, out = _hf_hidden_states(path, cls_name, tokens)
    n = model.n_layers
    assert len(out.hidden_states) == n + 1
    with record(model, ["blocks.*.hook_resid_pre", "blocks.*.hook_resid_post"]) as acts:
        logits = model(tokens)
    for layer in range(n):
        torch.testing.assert_close(
            acts[f"blocks.{layer}.hook_resid_pre"], out.hidden_states[layer], atol=1e-5, rtol=0
        )
    for layer in range(n - 1):
        torch.testing.assert_close(
            acts[f"blocks.{layer}.hook_resid_post"], out.hidden_states[layer + 1], atol=1e-5, rtol=0
        )
    # HF's last hidden state has the final norm applied
    norm = hf.get_submodule(final_norm)
    with torch.no_grad():
        last = norm(acts[f"blocks.{n - 1}.hook_resid_post"])
    torch.testing.assert_close(last, out.hidden_states[n], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)


def test_record_on_hooked_transformer_equals_run_with_cache(hooked):
    tokens = _tokens(4)
    _, cache = hooked.run_with_cache(tokens)
    with record(hooked, ["blocks.*.hook_resid_post", "blocks.1.attn.hook_z"]) as acts:
        hooked(tokens)
    for name in ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.1.attn.hook_z"):
        torch.testing.assert_close(acts[name], cache[name], atol=0, rtol=0)


def test_record_positions_int_list_slice_mask(any_model):
    tokens = _tokens(5, batch=2, pos=6)
    with record(any_model, RESID) as full:
        any_model(tokens)
    ref = full[RESID]
    assert ref.shape == (2, 6, 32)
    cases = [(-1, ref[:, -1]), ([0, 3], ref[:, [0, 3]]), (slice(1, 4), ref[:, 1:4])]
    for positions, want in cases:
        with record(any_model, RESID, positions=positions, device="cpu") as acts:
            any_model(tokens)
        torch.testing.assert_close(acts[RESID], want, atol=0, rtol=0)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1] = mask[1, 4] = mask[1, 5] = True
    with record(any_model, RESID, positions=mask) as acts:
        any_model(tokens)
    torch.testing.assert_close(acts[RESID], torch.stack([ref[0, 1], ref[1, 4], ref[1, 5]]))
    with pytest.raises(ValueError, match="mask"), record(any_model, RESID, positions=mask[:, :3]):
        any_model(tokens)


def test_record_keeps_the_last_forward_pass_detached(hooked):
    with record(hooked, RESID) as acts:
        hooked(_tokens(0))
        hooked(_tokens(1))
    with record(hooked, RESID) as want:
        hooked(_tokens(1))
    torch.testing.assert_close(acts[RESID], want[RESID], atol=0, rtol=0)
    assert not acts[RESID].requires_grad


# --- semantics --------------------------------------------------------------------------


@pytest.mark.parametrize("site", [RESID, "blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"])
def test_patch_with_another_runs_recording_reproduces_its_logits(any_model, site):
    clean, corrupt = _tokens(10), _tokens(11)
    with record(any_model, site) as rec:
        target = any_model(corrupt)
    base = any_model(clean)
    with patch(any_model, rec):
        patched = any_model(clean)
    if site == "blocks.0.hook_mlp_out":  # only one component is swapped: logits move, not to target
        assert not torch.allclose(patched, base)
        return
    torch.testing.assert_close(patched, target, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(patched, base)


def test_patch_at_one_position_changes_only_later_positions(any_model):
    clean, corrupt = _tokens(12), _tokens(13)
    with record(any_model, RESID, positions=3) as rec:
        any_model(corrupt)
    base = any_model(clean)
    with patch(any_model, rec, positions=3):
        patched = any_model(clean)
    torch.testing.assert_close(patched[:, :3], base[:, :3], atol=1e-6, rtol=0)
    assert not torch.allclose(patched[:, 3:], base[:, 3:])


def test_patch_with_a_callable(any_model):
    tokens = _tokens(14)
    with record(any_model, RESID) as clean:
        any_model(tokens)
    with patch(any_model, {RESID: lambda a: -a}, positions=[1, 2]), record(any_model, RESID) as acts:
        any_model(tokens)
    want = clean[RESID].clone()
    want[:, [1, 2]] *= -1
    torch.testing.assert_close(acts[RESID], want, atol=0, rtol=0)


def test_wrong_shape_value_raises_value_error_naming_the_hook(any_model, hook_counts):
    with pytest.raises(ValueError, match=r"blocks\.0\.hook_resid_post.*\(5,\)"):
        with patch(any_model, {RESID: torch.zeros(5)}):
            any_model(_tokens(0))
    with pytest.raises(ValueError, match=r"blocks\.0\.hook_resid_post"):
        with patch(any_model, {RESID: torch.zeros(3, 7, 32)}):  # batch 2, not 3
            any_model(_tokens(0))
    with pytest.raises(ValueError, match=r"size 5 .*blocks\.0\.hook_resid_post"):
        with add_vector(any_model, RESID, torch.ones(5)):
            any_model(_tokens(0))
    assert hook_counts(_module(any_model)) == {}


def test_add_vector_changes_only_the_chosen_positions(any_model):
    tokens = _tokens(20, pos=8)
    vec = torch.randn(32, generator=torch.Generator().manual_seed(0))
    with record(any_model, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]) as clean:
        any_model(tokens)
    with add_vector(any_model, RESID, vec, scale=2.0, positions=[2, 5]):
        with record(any_model, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]) as acts:
            any_model(tokens)
    delta = acts[RESID] - clean[RESID]
    torch.testing.assert_close(delta[:, [2, 5]], (2.0 * vec).expand(2, 2, 32), atol=1e-5, rtol=0)
    others = [p for p in range(8) if p not in (2, 5)]
    assert delta[:, others].abs().max() == 0
    # causality downstream: positions before the first edited one are untouched at layer 1
    later = acts["blocks.1.hook_resid_post"] - clean["blocks.1.hook_resid_post"]
    assert later[:, :2].abs().max() == 0
    assert later[:, 2:].abs().max() > 0


def test_add_vector_with_a_boolean_position_mask(any_model):
    tokens = _tokens(21, pos=5)
    vec = torch.ones(32)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 4] = mask[1, 0] = True
    with record(any_model, RESID) as clean:
        any_model(tokens)
    with add_vector(any_model, RESID, vec, positions=mask), record(any_model, RESID) as acts:
        any_model(tokens)
    delta = acts[RESID] - clean[RESID]
    torch.testing.assert_close(delta[mask], torch.ones(2, 32), atol=1e-5, rtol=0)
    assert delta[~mask].abs().max() == 0


def test_zero_ablation(any_model):
    tokens = _tokens(30)
    with record(any_model, RESID) as clean:
        any_model(tokens)
    with ablate(any_model, RESID), record(any_model, RESID) as acts:
        any_model(tokens)
    assert acts[RESID].abs().max() == 0
    with ablate(any_model, RESID, positions=-1), record(any_model, RESID) as acts:
        any_model(tokens)
    assert acts[RESID][:, -1].abs().max() == 0
    torch.testing.assert_close(acts[RESID][:, :-1], clean[RESID][:, :-1], atol=0, rtol=0)


def test_mean_ablation_uses_the_run_mean_or_given_means(any_model):
    tokens = _tokens(31)
    with record(any_model, RESID) as clean:
        any_model(tokens)
    run_mean = clean[RESID].mean(dim=(0, 1))
    with ablate(any_model, RESID, mode="mean", positions=[0, 1]), record(any_model, RESID) as acts:
        any_model(tokens)
    torch.testing.assert_close(acts[RESID][:, :2], run_mean.expand(2, 2, 32), atol=1e-6, rtol=0)
    torch.testing.assert_close(acts[RESID][:, 2:], clean[RESID][:, 2:], atol=0, rtol=0)
    given = torch.arange(32.0)
    with ablate(any_model, RESID, mode="mean", means={RESID: given}), record(any_model, RESID) as acts:
        any_model(tokens)
    torch.testing.assert_close(acts[RESID], given.expand(2, 7, 32), atol=0, rtol=0)


def test_ablate_rejects_bad_mode_and_incomplete_means(any_model):
    # ValueError from ablate itself; TypeError when the jaxtyping/beartype hook checks first
    with pytest.raises((ValueError, TypeError), match="'median'"):
        ablate(any_model, RESID, mode="median").__enter__()
    with pytest.raises(HookNameError, match="blocks.1.hook_resid_post"):
        ablate(any_model, "blocks.*.hook_resid_post", mode="mean", means={RESID: torch.zeros(32)}).__enter__()


def test_hooks_replacement_and_nesting(hooked):
    tokens = _tokens(40)
    seen = []
    with hooks(hooked, {RESID: lambda a, n: seen.append(n)}):
        with hooks(hooked, {"blocks.*.hook_resid_pre": lambda a, n: seen.append(n)}):
            hooked(tokens)
        hooked(tokens)
    assert seen == ["blocks.0.hook_resid_pre", RESID, "blocks.1.hook_resid_pre", RESID]
