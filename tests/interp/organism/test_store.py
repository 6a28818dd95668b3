"""interp.organism.store: a zoo on disk is data, never code, and its sizes are checked before use.

Each test builds a one-model zoo by hand (world.json + NAME/{model.safetensors,config.json,card.json},
as the builder lays it out), then damages a copy of it.
"""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from interp.errors import InterpError, SpecError
from interp.models import load_model
from interp.organism.store import CONFIG_KEYS, ZOO_ENV, load_organism, load_world
from interp.organism.train import ModelShape

SHAPE = ModelShape(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=32)


@pytest.fixture(scope="module")
def clean_zoo(tmp_path_factory) -> Path:
    from interp.organism.store import save_weights_atomic
    from interp.organism.tokenizer import organism_vocab
    from interp.organism.train import build_model
    from interp.organism.world import make_world

    zoo = tmp_path_factory.mktemp("zoo")
    world = make_world()
    vocab = organism_vocab(world.n_nodes)
    (zoo / "world.json").write_text(json.dumps({"world": world.to_json(), "vocab": vocab}))
    folder = zoo / "m"
    folder.mkdir()
    save_weights_atomic(folder / "model.safetensors", build_model(SHAPE, len(vocab), seed=0))
    (folder / "config.json").write_text(json.dumps(SHAPE.hooked_config(len(vocab))))
    (folder / "card.json").write_text(json.dumps({"name": "m"}))
    return zoo


@pytest.fixture
def zoo(clean_zoo, tmp_path) -> Path:
    return Path(shutil.copytree(clean_zoo, tmp_path / "zoo"))


def _edit_config(zoo: Path, **changes) -> None:
    path = zoo / "m" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _refusal(zoo: Path, match: str) -> str:
    with pytest.raises(SpecError, match=match) as exc:
        load_organism("m", zoo)
    msg = str(exc.value)
    assert isinstance(exc.value, InterpError) and "\n" not in msg, msg
    return msg


def test_the_allow_list_is_what_the_builder_writes():
    assert set(CONFIG_KEYS) == set(SHAPE.hooked_config(10))


def test_a_clean_zoo_loads_with_its_weights(zoo, monkeypatch):
    from safetensors.torch import load_file

    model, tok = load_organism("m", zoo)
    saved = load_file(str(zoo / "m" / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    m = load_model("organism:m", device="cpu")
    assert m.tokenizer_record()["prepend_bos"] is False
    assert m.encode("Q n1 n3 T", add_special_tokens=False) == m.encode("Q n1 n3 T") == tok.encode("Q n1 n3 T")
    with pytest.raises(SpecError, match="prepend_bos=True for 'organism:m', but its tokenizer WordTokenizer"):
        load_model("organism:m", device="cpu", prepend_bos=True)


def test_a_config_that_would_import_code_is_refused_and_nothing_runs(zoo, tmp_path, monkeypatch):
    """tokenizer_name + trust_remote_code made TransformerLens import a class from any folder."""
    evil, marker = tmp_path / "evil_tokenizer", tmp_path / "MARKER"
    evil.mkdir()
    (evil / "tokenization_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    auto_map = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (evil / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "EvilTokenizer", "auto_map": auto_map})
    )
    _edit_config(zoo, tokenizer_name=str(evil), trust_remote_code=True)
    msg = _refusal(zoo, r"config.json' has unknown keys \['tokenizer_name', 'trust_remote_code'\]; refused")
    assert "Accepted keys: n_layers, d_model" in msg
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    with pytest.raises(SpecError, match="unknown keys"):
        load_model("organism:m", device="cpu", trust_remote_code=True)  # no consent makes it a zoo key
    assert not marker.exists(), "the folder's code ran"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"act_fn": "evil"}, r"act_fn='evil'; expected one of \('gelu'"),
        ({"n_layers": True}, "n_layers=True; expected a positive int"),
        ({"d_mlp": -1}, "d_mlp=-1; expected a positive int"),
        ({"d_vocab": "64"}, "d_vocab='64'; expected a positive int"),
        ({"default_prepend_bos": 0}, "default_prepend_bos=0; expected one of"),
        ({"normalization_type": "BN"}, "normalization_type='BN'"),
    ],
)
def test_bad_config_values_are_refused_naming_them(changes, match, zoo):
    _edit_config(zoo, **changes)
    _refusal(zoo, match)


def test_a_config_missing_a_size_is_refused(zoo):
    path = zoo / "m" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["d_model"]
    path.write_text(json.dumps(cfg))
    _refusal(zoo, r"lacks \['d_model'\]")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"d_vocab": 10**12}, r"not match model.safetensors: embed.W_E has shape \(\d+, 16\) in the weights"),
        ({"n_ctx": 10**7}, "does not match model.safetensors: .* has shape"),
        ({"n_layers": 10**9}, "n_layers=1000000000 but model.safetensors holds 1 blocks"),
        ({"d_mlp": 64}, r"blocks.0.mlp.W_in has shape \(16, 32\) in the weights but \(16, 64\) by the"),
    ],
)
def test_sizes_are_checked_against_the_weights_before_allocating(changes, match, zoo):
    _edit_config(zoo, **changes)
    t0 = time.perf_counter()
    _refusal(zoo, match)
    assert time.perf_counter() - t0 < 3


def test_a_truncated_weights_file_is_one_line(zoo):
    path = zoo / "m" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    _refusal(zoo, "model.safetensors' is not a complete safetensors file")


def test_unreadable_json_is_one_line(zoo):
    (zoo / "m" / "config.json").write_text('{"n_layers": 1,')
    _refusal(zoo, "config.json' is not readable JSON")
    (zoo / "m" / "config.json").write_text("[1, 2]")
    _refusal(zoo, "holds a list; expected a JSON object")
    (zoo / "world.json").write_text(json.dumps({"vocab": ["a"]}))
    with pytest.raises(SpecError, match="world.json' is not a zoo world"):
        load_world(zoo)


def test_doses_are_listed_in_step_order_and_an_unknown_one_is_refused(zoo, monkeypatch):
    from interp.organism.store import available_doses, available_organisms, read_card

    for d in (10, 2):
        shutil.copytree(zoo / "m", zoo / f"m@{d}")
        (zoo / f"m@{d}" / "card.json").write_text(json.dumps({"name": f"m@{d}", "dose_steps": d}))
    shutil.copytree(zoo / "m", zoo / "m@7")
    (zoo / "m@7" / "card.json").unlink()  # incomplete: not a dose
    assert available_organisms(zoo) == ["m", "m@2", "m@10"]
    assert available_organisms(zoo, doses=False) == ["m"] and available_doses("m", zoo) == [2, 10]
    assert read_card("m@10", zoo)["dose_steps"] == 10
    model, _ = load_organism("m@2", zoo)
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    assert (
        load_model("organism:m@2", device="cpu").fingerprint
        == load_model("organism:m", device="cpu").fingerprint
    )
    for bad in ("m@7", "m@0", "m@-1", "m@../m"):
        with pytest.raises(
            SpecError, match=r"no dose .* of organism 'm' in the zoo at .*; doses on disk: m@2, m@10"
        ) as exc:
            load_organism(bad, zoo)
        assert "\n" not in str(exc.value)
    with pytest.raises(
        SpecError, match=r"no organism 'q@2' in the zoo at .*; available: m \(a dose is NAME@STEPS\)"
    ):
        load_organism("q@2", zoo)
