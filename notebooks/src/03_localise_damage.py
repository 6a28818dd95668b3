# %% [markdown]
# # Localise fine-tuning damage
#
# Did fine-tuning break something the base model could do, and if so, in which layers? This notebook compares the organism's `base` with its answer-only fine-tune `sft-answer` on four kinds of evidence per layer (`probes.damage`): how much each component's weights moved, how similar the two models' activations stay (linear CKA, here on a citable paired cache), whether base-fitted probes still read the tuned model, and, where the tuned model lost score, which component patched back from the base restores it. A hand-damaged copy of `base` (one MLP re-randomised) checks that the method finds a damage whose place we know.

# %%
import os
PROFILE = os.environ.get("INTERP_PROFILE", "quick")   # the test suite runs these on "tiny"
ZOO = os.environ.get("INTERP_ZOO")                    # default: ~/.cache/interp/zoo
OUT = os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks")

# %%
from interp.organism import build_zoo, load_world

build_zoo(PROFILE, ZOO, progress=False)   # reuses every model already built
world, tok = load_world(ZOO)

# %% [markdown]
# Load the base model and a fine-tune. Both are ordinary `Model` handles; any two models of the same architecture (e.g. two `hf:` checkpoints) work the same way.

# %%
from interp.models import load_model

base = load_model("organism:base")
tuned = load_model("organism:sft-answer")
base.describe()

# %% [markdown]
# ## Weight change per component
#
# `||W_tuned - W_base||_F / ||W_base||_F` for the embeddings, each block's attention and MLP (with their norms), and the final norm + unembedding.

# %%
from interp.results import format_table
from probes.damage import weight_change

wc = weight_change(base, tuned)
print(format_table(["component", "relative change"], sorted(wc.items())))

# %% [markdown]
# ## CKA on a paired cache
#
# Both models over identical token rows (the held-out reasoning prompts); the cache IDs are what a write-up cites. Linear CKA of the residual stream per layer: 1 means the same representation up to rotation and scale.

# %%
from interp.cache import CacheConfig, build_paired_cache
from probes.cka import paired_cka

pair = build_paired_cache({"base": base, "tuned": tuned}, "organism:test_id", f"{OUT}/damage_pair",
                          CacheConfig(hooks=("blocks.*.hook_resid_post",), batch_size=64), progress=False)
for label in pair.labels:
    print(label, pair[label].id, pair[label].n_rows, "rows")
hooks = [f"blocks.{i}.hook_resid_post" for i in range(base.n_layers)]
print(format_table(["site", "CKA base vs tuned"], list(paired_cka(pair, hooks).items())))

# %% [markdown]
# ## A score, and the localiser
#
# The organism's knowledge is its facts (`F x :` followed by the neighbours of `x`). `organism_scorer("fact_recall")` counts facts recalled exactly; it is coarse (a model either recalls a fact or not), so we also score the mean log-probability of the true facts under teacher forcing: one batched forward pass, and it moves with small damage.

# %%
import torch
from interp.organism.traces import fact_prompt
from interp.organism.damage import organism_scorer

recall = organism_scorer("fact_recall", ZOO)
rows, starts = [], []
for x in range(world.n_nodes):
    prompt = tok.encode(fact_prompt(x))
    rows.append(prompt + tok.encode(" ".join([f"n{v}" for v in world.neighbours(x)] + ["E"])))
    starts.append(len(prompt))
width = max(map(len, rows))
fact_tokens = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
pos = torch.arange(width - 1)[None]
answer_mask = (pos >= torch.tensor(starts)[:, None] - 1) & (pos < torch.tensor([len(r) for r in rows])[:, None] - 1)

def fact_logprob(model):
    """Mean log-probability of the true neighbours (and E) after each F x :, teacher-forced."""
    with torch.no_grad():
        logp = model(fact_tokens).log_softmax(-1)[:, :-1].gather(-1, fact_tokens[:, 1:, None])[..., 0]
    return float((logp * answer_mask).sum() / answer_mask.sum())

print(f"fact recall: base {recall(base):.3f}, tuned {recall(tuned):.3f}")
print(f"fact log-prob: base {fact_logprob(base):.4f}, tuned {fact_logprob(tuned):.4f}")

# %% [markdown]
# `localise_damage` runs everything: patching (a weight transplant, both directions) where the tuned model lost score, weight change, CKA on the probe task's tokens, and probe retention (base-fitted probes for "is `y` a neighbour of `x`?", applied unchanged to the tuned model). Where nothing was lost, patching has nothing to restore and the verdict ranks layers by weight change instead.

# %%
from interp.organism.damage import organism_probe_rows
from probes.damage import ProbeTask, localise_damage

probe_task = ProbeTask(*organism_probe_rows(ZOO, max_problems=60))
report = localise_damage(base, tuned, fact_logprob, probe_task=probe_task, progress=False)
print(report)

# %%
from IPython.display import Image, display

display(Image(str(report.plot(f"{OUT}/damage_sft_answer.png"))))

# %% [markdown]
# Read the size of the loss before the verdict. The localiser ranks layers by any loss above `DamageConfig.min_gap`, however small; a fine-tune that recalls every fact it recalled before and loses a fraction of a thousandth of a nat has shifted its weights, not damaged its knowledge. The hand-damaged copy below shows what a real loss looks like.

# %%
gap = report.score_base - report.score_tuned
print(f"loss: {gap:.2g} nats per fact token; facts recalled: base {recall(base):.0%}, tuned {recall(tuned):.0%}")

# %% [markdown]
# ## A known damage: re-randomise one MLP
#
# A copy of `base` whose middle MLP is replaced by seeded Gaussian noise with each parameter's own mean and standard deviation. The localiser must name that layer: patching its MLP back from the base restores the whole loss, and the other evidence should agree.

# %%
from interp.models import Model

damaged = load_model("organism:base")
layer = damaged.n_layers // 2
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for p in damaged.module.blocks[layer].mlp.parameters():
        p.copy_(torch.randn(p.shape, generator=gen) * p.std().clamp_min(1e-3) + p.mean())
damaged = Model(damaged.module, damaged.tokenizer, f"base, blocks.{layer}.mlp re-randomised")

control = localise_damage(base, damaged, fact_logprob, probe_task=probe_task, progress=False)
print(control.verdict)
assert control.damaged_layers[0] == layer, control.damaged_layers
display(Image(str(control.plot(f"{OUT}/damage_control.png"))))

# %% [markdown]
# Next: swap the scorer for `organism_scorer("solve_rate")` to ask about reasoning instead of knowledge, compare other fine-tunes (`rl-answer`, `small-tuned` against `small-base`), or load two `hf:` checkpoints and write a scorer for your own task. `experiments/e5_damage_proxy.py` runs this comparison for every fine-tune of the zoo, with proxy-tuning as the alternative to weight fine-tuning.
