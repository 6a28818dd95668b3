"""Steered generation with the key-value cache: its overhead, and against the steering-vectors library.

(a) interp: steered vs unsteered greedy generation (``interp.generation.generate``; the vector
    added by ``SteeringVector.apply`` at every position of every pass) on the same model and
    prompts, for a random ``HookedTransformer`` and for a local GPT-2 loaded as ``hf:DIR``
    (TransformerBridge). Target: steered <= 1.10x unsteered.
(b) the same vector on the same Hugging Face GPT-2 directory with the steering-vectors library
    (PyPI ``steering-vectors``, ``SteeringVector.apply`` + ``model.generate``, greedy, KV cache).
    It pins ``transformers<5``, so it runs in its own venv, ``.bench/peers-steering``, created on
    first use (``python -m venv``; ``pip install torch==2.13.0``, then ``steering-vectors`` and
    ``transformers<5``). Both sides get the same prompts (equal length, no padding), the same
    number of new tokens, and the same directions at the same layers' outputs (``blocks.L.
    hook_resid_post`` = Hugging Face decoder block ``L``'s output); the generated tokens are
    compared.
(c) issue 13: the same directions added only at selected positions (``add_vector(...,
    positions=AfterTokens(...))``: the two positions after any of a quarter of the vocabulary,
    evaluated on the tokens seen so far through the KV cache) and only where a linear gate fires
    (``steering.conditional.steer_when`` with a ``LinearGate`` on the first steered hook, threshold
    0), each against unsteered generation on the same model. Target: <= 1.10x.

Each side runs in a fresh subprocess (``--child``); after one warm-up of each, unsteered and steered
runs alternate (best of ``--repeats`` each), so a change in the machine's load hits both alike.

    .venv/bin/python benchmarks/steering_generation.py [--threads 1] [--quick]
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import interleaved

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".bench" / "peers-steering"
PEER_PY = PEER_VENV / "bin" / "python"


def _arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--d-vocab", type=int, default=2000)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--steer-layers", default="1,2")
    p.add_argument("--norm", type=float, default=8.0, help="norm of each layer's direction")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="8 prompts, 16 new tokens, one repeat")
    p.add_argument("--workdir", default=None, help="keep the model, prompts and vector here")
    p.add_argument("--json", default=str(ROOT / ".bench" / "steering_generation.json"))
    p.add_argument("--child", choices=["interp-hooked", "interp-hf", "peer"], default=None)
    return p


# ---- setup (our venv) -------------------------------------------------------------------------


def _make_inputs(args, work: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=args.layers,
        n_embd=args.d_model,
        n_head=args.n_heads,
        vocab_size=args.d_vocab,
        n_positions=args.prompt_len + args.new_tokens + 8,
        bos_token_id=1,
        eos_token_id=1,
    )
    GPT2LMHeadModel(cfg).eval().save_pretrained(str(work / "gpt2"))
    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(args.d_vocab - 2)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    ).save_pretrained(str(work / "gpt2"))
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(2, args.d_vocab, (args.prompts, args.prompt_len), generator=g).tolist()
    (work / "prompts.json").write_text(json.dumps(prompts))
    dirs = {}
    for layer in (int(x) for x in args.steer_layers.split(",")):
        v = torch.randn(args.d_model, generator=g)
        dirs[str(layer)] = (args.norm * v / v.norm()).contiguous()
    save_file(dirs, str(work / "vector.safetensors"))


# ---- children ---------------------------------------------------------------------------------


def _child_interp(args, work: Path, kind: str) -> dict:
    import torch
    from safetensors.torch import load_file

    from interp.generation import generate
    from interp.hooks import add_vector
    from interp.models import as_model, load_model
    from interp.selectors import AfterTokens
    from steering.conditional import LinearGate, steer_when
    from steering.vectors import SteeringVector

    torch.set_num_threads(args.threads)
    prompts = json.loads((work / "prompts.json").read_text())
    dirs = load_file(str(work / "vector.safetensors"))
    if kind == "interp-hf":
        model = load_model(f"hf:{work / 'gpt2'}", device="cpu")
    else:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig(
            n_layers=args.layers,
            d_model=args.d_model,
            n_heads=args.n_heads,
            d_head=args.d_model // args.n_heads,
            d_mlp=4 * args.d_model,
            d_vocab=args.d_vocab,
            n_ctx=args.prompt_len + args.new_tokens + 8,
            act_fn="gelu_new",
            normalization_type="LN",
            seed=0,
            device="cpu",
        )
        model = as_model(HookedTransformer(cfg).eval(), spec="bench")
    vec = SteeringVector({f"blocks.{k}.hook_resid_post": v for k, v in dirs.items()}, {"method": "bench"})

    def plain():
        return generate(model, prompts, args.new_tokens, batch_size=len(prompts))

    def steered():
        with vec.apply(model, scale=1.0):
            return generate(model, prompts, args.new_tokens, batch_size=len(prompts))

    # issue 13: the same directions only after a quarter of the vocabulary (a selector evaluated
    # through the KV cache), and only where a linear gate on the first steered hook fires
    hooks = list(vec.directions)
    selector = AfterTokens(range(2, 2 + args.d_vocab // 4), within=2)
    first = hooks[0]
    gate = LinearGate(first, dirs[first.split(".")[1]] / args.norm, threshold=0.0)

    def selected():
        with contextlib.ExitStack() as stack:
            for hook in hooks:
                stack.enter_context(add_vector(model, hook, vec.directions[hook], positions=selector))
            return generate(model, prompts, args.new_tokens, batch_size=len(prompts))

    def conditional():
        with steer_when(model, vec, gate, scale=1.0):
            return generate(model, prompts, args.new_tokens, batch_size=len(prompts))

    fns = {"unsteered": plain, "steered": steered, "selector": selected, "conditional": conditional}
    return interleaved(fns, args.repeats)


def _child_peer(args, work: Path) -> dict:
    import torch
    from safetensors.torch import load_file
    from steering_vectors import SteeringVector
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    prompts = torch.tensor(json.loads((work / "prompts.json").read_text()))
    model = GPT2LMHeadModel.from_pretrained(str(work / "gpt2")).eval()
    dirs = load_file(str(work / "vector.safetensors"))
    vec = SteeringVector({int(k): v for k, v in dirs.items()}, layer_type="decoder_block")
    n = args.new_tokens

    def run():
        with torch.no_grad():
            out = model.generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )
        return out[:, prompts.shape[1] :].tolist()

    def steered():
        with vec.apply(model, multiplier=1.0):
            return run()

    return interleaved({"unsteered": run, "steered": steered}, args.repeats)


# ---- orchestration ----------------------------------------------------------------------------


def _ensure_peer_venv() -> None:
    if PEER_PY.exists():
        return
    print(f"creating {PEER_VENV} (torch 2.13.0, steering-vectors, transformers<5) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_PY), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "steering-vectors", "transformers<5"], check=True)


def _run_child(python: str, kind: str, argv: list[str], work: Path, threads: int) -> dict:
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TQDM_DISABLE="1",
        PYTHONPATH=str(ROOT) if kind != "peer" else "",
    )
    cmd = [python, __file__, *argv, "--child", kind, "--workdir", str(work)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = _arg_parser().parse_args(argv)
    if args.quick:
        args.prompts, args.new_tokens, args.repeats = 8, 16, 1
    if args.child:
        work = Path(args.workdir)
        res = _child_peer(args, work) if args.child == "peer" else _child_interp(args, work, args.child)
        print(json.dumps(res))
        return 0
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--quick",)]
    passthrough = _strip_option(_strip_option(passthrough, "--workdir"), "--json")
    passthrough += [
        "--prompts",
        str(args.prompts),
        "--new-tokens",
        str(args.new_tokens),
        "--repeats",
        str(args.repeats),
    ]
    _ensure_peer_venv()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        _make_inputs(args, work)
        t0 = time.time()
        load0 = os.getloadavg()[0]
        results = {
            kind: _run_child(py, kind, passthrough, work, args.threads)
            for kind, py in (
                ("interp-hooked", sys.executable),
                ("interp-hf", sys.executable),
                ("peer", str(PEER_PY)),
            )
        }
        elapsed = time.time() - t0
    _report(args, results, elapsed, load0)
    return 0


def _strip_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def _report(args, results: dict, elapsed: float, load0: float) -> None:
    n_tok = args.prompts * args.new_tokens
    print(
        f"model: GPT-2 shape, {args.layers} layers, d_model {args.d_model}, d_vocab {args.d_vocab}; "
        f"{args.prompts} prompts x {args.prompt_len} tokens, {args.new_tokens} new tokens (greedy); "
        f"vector at layers {args.steer_layers}; torch threads {args.threads}; best of {args.repeats}"
    )
    print(f"\n{'side':<34} {'wall s':>8} {'CPU s':>8} {'new tok/s':>10}")
    rows = {}
    for kind, res in results.items():
        for name in res:
            label = f"{kind} {name}"
            rows[label] = res[name]
            wall, cpu = res[name]["wall"], res[name]["cpu"]
            print(f"{label:<34} {wall:>8.3f} {cpu:>8.3f} {n_tok / wall:>10.0f}")

    def ratio(a, b, key):
        return rows[a][key] / rows[b][key]

    print("\nratios (wall clock / CPU time):")
    checks = [
        ("interp-hooked steered", "interp-hooked unsteered", "steered/unsteered, HookedTransformer", 1.10),
        ("interp-hf steered", "interp-hf unsteered", "steered/unsteered, hf: bridge", 1.10),
        ("interp-hooked selector", "interp-hooked unsteered", "selector/unsteered, HookedTransformer", 1.10),
        ("interp-hf selector", "interp-hf unsteered", "selector/unsteered, hf: bridge", 1.10),
        ("interp-hooked conditional", "interp-hooked unsteered", "gated/unsteered, HookedTransformer", 1.10),
        ("interp-hf conditional", "interp-hf unsteered", "gated/unsteered, hf: bridge", 1.10),
        ("peer steered", "peer unsteered", "steering-vectors steered/unsteered", None),
        ("interp-hf steered", "peer steered", "interp hf steered / steering-vectors steered", None),
        ("interp-hf unsteered", "peer unsteered", "interp hf unsteered / HF generate unsteered", None),
    ]
    summary = {}
    for a, b, label, target in checks:
        w, c = ratio(a, b, "wall"), ratio(a, b, "cpu")
        summary[label] = {"wall": w, "cpu": c}
        note = (
            ""
            if target is None
            else f"  (target <= {target:.2f}{'' if w <= target or c <= target else ', MISSED'})"
        )
        print(f"{label:<48} {w:6.3f} / {c:6.3f}{note}")
    same = results["interp-hf"]["steered"]["tokens"] == results["peer"]["steered"]["tokens"]
    same_plain = results["interp-hf"]["unsteered"]["tokens"] == results["peer"]["unsteered"]["tokens"]
    hf = results["interp-hf"]
    kinds = ("steered", "selector", "conditional")
    changed = {name: hf[name]["tokens"] != hf["unsteered"]["tokens"] for name in kinds}
    partial = {name: hf[name]["tokens"] != hf["steered"]["tokens"] for name in ("selector", "conditional")}
    print(
        f"\nsame greedy tokens as steering-vectors: steered {same}, unsteered {same_plain}; "
        f"steering changed the output: {changed}; selector / gate output differs from every-position "
        f"steering: {partial}"
    )
    load1 = os.getloadavg()[0]
    print(
        f"total {elapsed:.0f} s; load average {load0:.2f} at start, {load1:.2f} at end "
        f"(a shared machine: wall-clock ratios are noisy, CPU-time ratios less so)"
    )
    record = {
        "config": vars(args),
        "ratios": summary,
        "same_tokens": {"steered": same, "unsteered": same_plain},
        "changed_by_steering": changed,
        "differs_from_every_position": partial,
        "timings": {k: {"wall": v["wall"], "cpu": v["cpu"]} for k, v in rows.items()},
        "load": [load0, load1],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
