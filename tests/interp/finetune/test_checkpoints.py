"""The relative weight change of a checkpoint, against a hand-computed value."""

import pytest
import torch

from interp.finetune import FinetuneError
from interp.finetune.checkpoints import relative_change


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=20,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


def test_relative_change_per_layer_matches_a_hand_computed_value():
    model = _tiny_llama()
    parent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert relative_change(model, parent) == {"overall": 0.0, "per_layer": [0.0, 0.0, 0.0], "other": 0.0}
    w = model.model.layers[1].mlp.down_proj.weight
    delta = torch.full_like(w, 0.01)
    with torch.no_grad():
        w += delta
    layer1 = [v for k, v in parent.items() if k.startswith("model.layers.1.")]
    expected_layer = delta.norm() / torch.sqrt(sum(v.pow(2).sum() for v in layer1))
    # tied: lm_head.weight is the embedding and counts once
    everything = [v for k, v in parent.items() if k != "lm_head.weight"]
    expected_all = delta.norm() / torch.sqrt(sum(v.pow(2).sum() for v in everything))
    change = relative_change(model, parent)
    assert change["per_layer"][0] == 0.0 and change["per_layer"][2] == 0.0 and change["other"] == 0.0
    assert change["per_layer"][1] == pytest.approx(float(expected_layer), rel=1e-5)
    assert change["overall"] == pytest.approx(float(expected_all), rel=1e-5)


def test_a_weight_the_parent_lacks_is_refused():
    model = _tiny_llama()
    parent = {k: v for k, v in model.state_dict().items() if "layers.2.mlp" not in k}
    with pytest.raises(
        FinetuneError, match=r"weight 'model.layers.2.mlp.gate_proj.weight' is not in the parent"
    ):
        relative_change(model, parent)
