"""hf: models loaded with a device_map (and max_memory): the plain load's numbers, or a one-line refusal.

The CPU is the only device here, so a map that puts every module on "cpu" explicitly stands for
one that splits the layers; multi-GPU placement is not exercised in CI.
"""

import argparse

import pytest
import torch
from cli_run import cli, flags, refused

import interp.models
import interp.placement
from interp.cache import CacheConfig, build_cache
from interp.cli import build_parser
from interp.errors import PlacementError
from interp.hooks import add_vector, record
from interp.models import load_model
from interp.placement import default_placement

# The tiny Llama's Hugging Face modules, each placed on its own.
PER_LAYER = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "cpu",
    "model.norm": "cpu",
    "lm_head": "cpu",
}
TOKENS = torch.tensor([[1, 5, 7, 9, 3, 4], [2, 8, 6, 5, 3, 1]])


@pytest.fixture(scope="module")
def placed(llama_dir):
    return load_model(f"hf:{llama_dir}", device_map=PER_LAYER)


def _resid(model) -> dict[str, torch.Tensor]:
    with record(model, "blocks.*.hook_resid_post") as acts:
        logits = model(TOKENS)
    return {"logits": logits, **acts}


def test_an_all_cpu_map_gives_the_plain_loads_logits_activations_and_fingerprint(placed, llama):
    assert placed.device_map == PER_LAYER and llama.device_map is None
    assert placed.device == torch.device("cpu")
    got, want = _resid(placed), _resid(llama)
    assert set(got) == {"logits", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert placed.fingerprint == llama.fingerprint
    assert placed.describe() == llama.describe()  # placement is not identity: caches share IDs


def test_auto_on_a_cpu_machine_places_everything_on_the_cpu_and_agrees(llama_dir, llama):
    auto = load_model(f"hf:{llama_dir}", device_map="auto", max_memory={"cpu": "1GiB"})
    assert auto.device_map == {"": "cpu"} and auto.device == torch.device("cpu")
    assert torch.equal(auto(TOKENS), llama(TOKENS))
    assert auto.fingerprint == llama.fingerprint


def test_steering_and_a_cache_build_on_the_placed_model_equal_the_plain_ones(
    placed, llama, prompts_file, tmp_path
):
    vector = torch.linspace(-1, 1, llama.d_model)
    steered = {}
    for label, model in (("placed", placed), ("plain", llama)):
        with add_vector(model, "blocks.0.hook_resid_post", vector, scale=3.0):
            steered[label] = model(TOKENS)
    assert torch.equal(steered["placed"], steered["plain"])
    assert not torch.equal(steered["plain"], llama(TOKENS))  # the vector did something

    config = CacheConfig(hooks=("blocks.*.hook_resid_post",), shard_tokens=40, batch_size=4, max_tokens=120)
    a = build_cache(placed, prompts_file, tmp_path / "placed", config, progress=False)
    b = build_cache(llama, prompts_file, tmp_path / "plain", config, progress=False)
    assert a.id == b.id  # the ID hashes every shard's bytes: the same activations, the same model


def test_generation_plain_and_steered_on_the_placed_model_equals_the_plain_ones(placed, llama):
    from interp.generation import generate

    prompts, vector = [[1, 5, 7], [2, 8, 6, 5, 3]], torch.linspace(-1, 1, llama.d_model)
    runs = {}
    for label, model in (("placed", placed), ("plain", llama)):
        runs[label, "plain"] = generate(model, prompts, 6)
        with add_vector(model, "blocks.0.hook_resid_post", vector, scale=0.5):
            runs[label, "steered"] = generate(model, prompts, 6)
    assert runs["placed", "plain"] == runs["plain", "plain"]
    assert runs["placed", "steered"] == runs["plain", "steered"] != runs["plain", "plain"]


@pytest.mark.parametrize(
    ("options", "expect"),
    [
        ({"device_map": "auto", "max_memory": {"cpu": "20KB"}}, "would offload 1 module(s) to 'disk'"),
        ({"device_map": "autoo"}, "device_map 'autoo' is not a device or strategy; expected 'auto'"),
        ({"device_map": "disk"}, "device_map 'disk': offload is refused: the TransformerLens bridge"),
        ({"device_map": {"": "meta"}}, "device_map[''] 'meta': offload is refused"),
        ({"device_map": "cuda:7"}, "device_map 'cuda:7': device 'cuda:7' is not usable here"),
        ({"device_map": {"model.layerz.0": "cpu"}}, "names 'model.layerz.0', which is not a module of"),
        ({"device_map": {"model.layers.0": "cpu"}}, "device_map gives no device to"),
        ({"device_map": "auto", "max_memory": {"cpu": "lots"}}, "max_memory['cpu'] 'lots' is not a size"),
        ({"device_map": "auto", "max_memory": {"disk": "1GiB"}}, "max_memory device 'disk': offload is"),
        ({"max_memory": {"cpu": "1GiB"}}, "without a device_map; max_memory budgets the device_map"),
        ({"device_map": "cpu", "max_memory": {"cpu": "1GiB"}}, "max_memory budgets only auto, balanced"),
        ({"device_map": "auto", "device": "cpu"}, "device 'cpu' and device_map 'auto' both given"),
    ],
    ids=["offload", "unknown", "disk", "meta", "absent-gpu", "unknown-module", "uncovered", "bad-size",
         "disk-budget", "budget-alone", "budget-explicit", "with-device"],
)
def test_unusable_placements_are_refused_in_one_line_before_the_weights_load(
    llama_dir, monkeypatch, options, expect
):
    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were read before the placement was refused")

    monkeypatch.setattr(interp.models, "_load_hf_weights", no_weights)
    with pytest.raises(PlacementError) as info:
        load_model(f"hf:{llama_dir}", **options)
    assert expect in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["organism:base", "tl:gpt2"])
def test_a_device_map_for_a_spec_that_cannot_take_one_is_refused(spec):
    with pytest.raises(PlacementError, match=r"only hf:PATH, gguf: and named models load with a device_map"):
        load_model(spec, device_map="auto")


def test_a_device_map_for_a_model_already_loaded_is_refused(llama):
    with pytest.raises(PlacementError, match="a model is placed while it loads"):
        load_model(llama, device_map="cpu")


def test_default_placement_loads_a_spec_with_it_in_place_of_the_device_it_names(llama_dir, llama):
    with default_placement({"": "cpu"}):
        model = load_model(f"hf:{llama_dir}", device="cpu")
    assert model.device_map == {"": "cpu"}
    assert load_model(f"hf:{llama_dir}", device="cpu").device_map is None  # only inside the block
    assert torch.equal(model(TOKENS), llama(TOKENS))


# --- the command line ---------------------------------------------------------------------------


def _build(tmp_path, llama_dir, prompts_file, out: str, **extra):
    return flags(
        "cache", "build", model=f"hf:{llama_dir}", prompts=prompts_file, hooks="blocks.1.hook_resid_post",
        out=tmp_path / out, max_tokens=60, q=True, **extra,
    )


def test_cache_build_with_device_map_writes_the_plain_builds_id(tmp_path, llama_dir, prompts_file, capsys):
    placed = _build(tmp_path, llama_dir, prompts_file, "placed", device_map='{"": "cpu"}')
    rc, placed_out, _ = cli(placed, capsys)
    assert rc == 0
    rc, plain_out, _ = cli(_build(tmp_path, llama_dir, prompts_file, "plain", device="cpu"), capsys)
    assert rc == 0
    assert placed_out.splitlines()[0] == plain_out.splitlines()[0]
    assert placed_out.splitlines()[0].startswith("sha256:")


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        ({"device_map": "autoo"}, "argument --device-map: device_map 'autoo' is not a device or strategy"),
        ({"device_map": "{oops"}, "argument --device-map: '{oops' is not a JSON object"),
        ({"device_map": "auto", "max_memory": "cpu:2GiB"}, "expected comma-separated DEVICE=SIZE pairs"),
        ({"device_map": "auto", "max_memory": "cpu=two"}, "max_memory['cpu'] 'two' is not a size"),
        ({"max_memory": "cpu=2GiB"}, "--max-memory needs --device-map auto|balanced|balanced_low_0|seq"),
        ({"device_map": "cpu", "max_memory": "cpu=2GiB"}, "--max-memory budgets only --device-map auto"),
        ({"device_map": "auto", "device": "cpu"}, "--device cpu and --device-map \"auto\": give one"),
        ({"device_map": "auto", "max_memory": "cpu=20KB"}, "would offload 1 module(s) to 'disk'"),
    ],
    ids=["unknown", "bad-json", "bad-pair", "bad-size", "budget-alone", "budget-explicit", "with-device",
         "offload"],
)
def test_bad_placement_flags_are_refused_in_one_line_and_nothing_is_written(
    tmp_path, llama_dir, prompts_file, capsys, extra, expect
):
    refused(_build(tmp_path, llama_dir, prompts_file, "out", **extra), capsys, expect, tmp_path / "out")


def test_device_map_under_torchrun_is_refused(tmp_path, llama_dir, prompts_file, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    refused(_build(tmp_path, llama_dir, prompts_file, "out", device_map="auto"), capsys,
            "--device-map under torchrun (WORLD_SIZE 2)", tmp_path / "out")


class Placed(Exception):
    """Raised by the stand-in hf loader: load_model got as far as loading, with this placement."""


def test_the_flags_reach_load_model_in_a_subcommand_that_does_not_pass_them(tmp_path, monkeypatch):
    def fake_load_hf(path, spec, device, dtype, prepend_bos, trust, placement=None):
        raise Placed(spec, device, placement)

    monkeypatch.setattr(interp.models, "_load_hf", fake_load_hf)
    prompts = tmp_path / "p.txt"
    prompts.write_text("w1 w2\nw3 w4\n")
    argv = ["steer", "vector", "--model", "hf:M", "--positive", prompts, "--negative", prompts,
            "--layers", "1", "--out", tmp_path / "out", "--device-map", "auto", "--max-memory", "cpu=1GiB"]
    with pytest.raises(Placed) as info:
        cli(argv)
    spec, device, placement = info.value.args
    assert (spec, device) == ("hf:M", None)
    assert placement == interp.placement.Placement("auto", {"cpu": 2**30})
    assert interp.placement.placement_in_force() is None  # not left set after the command


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), {flag for a in parser._actions for flag in a.option_strings}
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*path, name))


def test_every_subcommand_with_model_dtype_takes_the_placement_flags():
    """Except fine-tuning, which trains a plain model on its --device (it may opt out)."""
    loaders = {path: opts for path, opts in _leaves(build_parser()) if "--model-dtype" in opts}
    loaders.pop("finetune", None)
    assert {"cache build", "cache verify", "steer vector", "probe damage"} <= set(loaders)
    lacking = [path for path, opts in loaders.items() if not {"--device-map", "--max-memory"} <= opts]
    assert lacking == []
