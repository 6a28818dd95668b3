"""Decoding oracles shared by the tests of steering through the KV cache (selectors, gates)."""

import torch

from interp.generation import IncrementalDecoder
from interp.models import as_model

PAD = 1  # the tiny models' <eos>, which the llama fixture's tokenizer pads with


def no_cache_greedy(model, prompts, n):
    """Each prompt alone; for every new token the whole sequence again. Tokens and per-step logits."""
    tokens, logits = [], []
    for p in prompts:
        seq, steps = list(p), []
        for _ in range(n):
            with torch.no_grad():
                last = as_model(model).module(torch.tensor([seq]))[0, -1].float()
            steps.append(last)
            seq.append(int(last.argmax()))
        tokens.append(seq[len(p) :])
        logits.append(torch.stack(steps))
    return tokens, torch.stack(logits, 1)  # [step, batch, d_vocab]


def decode_logits(model, prompts, n):
    """Greedy IncrementalDecoder (left-padded batch, KV cache): per-step logits ``[step, batch, d_vocab]``."""
    dec = IncrementalDecoder(model, prompts, pad_id=PAD)
    out = [dec.logits]
    for _ in range(n - 1):
        out.append(dec.advance(dec.logits.argmax(-1)))
    return torch.stack(out)
