# %% [markdown]
# # Find and steer an epistemic feature
#
# The base organism checks itself (`WAIT CHECK ... OK`); the clean-trace fine-tune `sft-clean` never does. This notebook trains a small sparse autoencoder on the base model's residual stream, finds the feature that fires just before `WAIT`, checks whether it still fires in the fine-tune, and steers the fine-tune along it (and along a difference-of-means direction) to bring the self-checks back. It uses the zoo that notebook 1 builds.

# %%
import os

PROFILE = os.environ.get("INTERP_PROFILE", "quick")  # the test suite runs these on "tiny"
ZOO = os.environ.get("INTERP_ZOO")  # default: ~/.cache/interp/zoo
OUT = os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks")
TINY = PROFILE == "tiny"
N_PROBLEMS, SAMPLES = (32, 4) if TINY else (256, 4)  # problems sampled, responses per problem
SAE_TOKENS = 20_000 if TINY else 200_000  # activations the SAE trains on

# %% [markdown]
# Load the base model, its clean-trace fine-tune, and the world they were trained on. The SAE reads the residual stream after the middle layer.

# %%
import torch
from interp.models import load_model
from interp.organism import load_world, markers_per_response, respond
from interp.organism.traces import cot_prompt

base, tuned = load_model("organism:base"), load_model("organism:sft-clean")
world, tok = load_world(ZOO)
HOOK = f"blocks.{base.n_layers // 2}.hook_resid_post"
print(HOOK)

# %% [markdown]
# Text with self-checks in it: the base model's own responses, sampled at temperature 1 (prompt + response).

# %%
prompts = [cot_prompt(a, b) for a, b in world.split("train")[:N_PROBLEMS] for _ in range(SAMPLES)]
sampled = respond(base.module, tok, prompts, temperature=1.0, generator=torch.Generator().manual_seed(0))
pairs = zip(prompts, sampled, strict=True)
texts = list(dict.fromkeys(f"{p} {' '.join(r)}" for p, r in pairs))  # distinct responses only
print(len(texts), "distinct responses,", sum(t.count("WAIT") for t in texts), "WAITs; e.g.\n", texts[0])

# %% [markdown]
# Cache both models over exactly these tokens (a paired cache), at the SAE's hook.

# %%
from interp.cache import CacheConfig, build_paired_cache

pair = build_paired_cache(
    {"base": "organism:base", "tuned": "organism:sft-clean"},
    texts,
    f"{OUT}/resid_mid",
    CacheConfig(hooks=(HOOK,), batch_size=64),
    progress=False,
)
print(pair["base"].id, pair["base"].n_positions, "positions")

# %% [markdown]
# Train a small top-k SAE (sae-lens) on the base model's activations, straight from the cache.

# %%
from steering.sae import SAETrainConfig, evaluate_sae, train_sae

config = SAETrainConfig(
    architecture="topk", expansion_factor=4, k=8, lr=1e-3, training_tokens=SAE_TOKENS, batch_size=256
)
trained = train_sae(pair["base"], HOOK, config, progress=False)
sae = trained.sae
print(evaluate_sae(sae, pair["base"], HOOK, model=base))

# %% [markdown]
# Rank every feature by how well it picks out the positions whose *next* token is `WAIT` (AUROC).

# %%
from IPython.display import Image
from steering.features import marker_labels, rank_features

labels = marker_labels(pair["base"], tok, "WAIT")
ranking = rank_features(sae, pair["base"], HOOK, labels)
FEATURE = ranking.top(1)[0]
print(ranking.n_positive, "positions before WAIT of", ranking.n_positive + ranking.n_negative)
print(ranking.table(5))
Image(ranking.plot(f"{OUT}/features.png"))

# %% [markdown]
# Where the best features fire most: the marked token is the one the feature reads.

# %%
from steering.features import top_contexts

print(top_contexts(sae, pair["base"], HOOK, ranking.top(2), k=4, before=8, after=2, tokenizer=tok))

# %% [markdown]
# Does the feature still fire in the fine-tune, over the very same tokens? A feature that fires about as often there was not erased by training, only cut off from the `WAIT` it used to predict.

# %%
from steering.features import firing_rates

rates = firing_rates(sae, pair, HOOK, labels=("base", "tuned"))
print(
    f"feature {FEATURE}: fires at {rates.rates[0, FEATURE]:.3f} of positions in base, "
    f"{rates.rates[1, FEATURE]:.3f} in sft-clean"
)
print(rates.table(5))
Image(rates.plot(f"{OUT}/firing_rates.png"))

# %% [markdown]
# Two steering vectors: the feature's decoder direction, and the difference of means between positions before `WAIT` and all others. The SAE direction has unit norm, so it is rescaled to the difference of means' norm to make scales comparable.

# %%
from steering.vectors import SteeringVector, from_cache, from_sae_feature

caa = from_cache(pair["base"], labels, hooks=[HOOK])
unit = from_sae_feature(sae, FEATURE, model=base)
feat = SteeringVector({HOOK: unit.directions[HOOK] * caa.norms()[HOOK]}, unit.meta)
cos = torch.nn.functional.cosine_similarity(feat.directions[HOOK], caa.directions[HOOK], dim=0)
print(f"|diff of means| = {caa.norms()[HOOK]:.2f}; cosine(feature {FEATURE}, diff of means) = {cos:.2f}")

# %% [markdown]
# Steer the fine-tune: add each vector (at every position) while it answers held-out problems greedily, and count its markers. The example shown is the first response with a `WAIT`, if any.

# %%
test = [cot_prompt(a, b) for a, b in world.split("test_id")[: 16 if TINY else 64]]
SCALE = 0.6
for name, vec in (("none", None), ("SAE feature", feat), ("diff of means", caa)):
    if vec is None:
        out = respond(tuned.module, tok, test)
    else:
        with vec.apply(tuned, scale=SCALE):
            out = respond(tuned.module, tok, test)
    example = next((o for o in out if "WAIT" in o), out[0])
    print(f"{name:>14}: {markers_per_response(out):.2f} markers per response | {' '.join(example)}")

# %% [markdown]
# A dose-response sweep of the feature's direction: markers and solve rate (targets) against fact recall, trace validity and KL on neutral text (costs). Whether a window of scales brings markers back before the costs climb is the question.

# %%
import logging
from interp.organism.steering import organism_metrics
from steering.sweep import SweepConfig, dose_response, kl_cost

logging.getLogger("steering.vectors").setLevel(logging.ERROR)  # the base->tuned warning, said once above
targets, costs = organism_metrics(tuned, tok, world, max_problems=8 if TINY else 64, kl_cost=kl_cost)
sweep = dose_response(tuned, feat, targets, costs, SweepConfig(scales=(0.0, 0.25, 0.5, 0.6, 0.7, 1.0)))
print(sweep)
Image(sweep.plot(f"{OUT}/sweep.png"))
