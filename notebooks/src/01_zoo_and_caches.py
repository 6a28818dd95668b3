# %% [markdown]
# # Load the organism zoo and cache activations
#
# The zoo is the toolkit's built-in model organism: a base model trained on verbalized reasoning traces over a synthetic graph world, and its accuracy-optimized fine-tunes. This notebook builds (or reuses) it, looks at one model's reasoning, and caches the residual stream of the base model and a fine-tune over the same tokens: a citable artifact with a content ID.

# %%
import os
PROFILE = os.environ.get("INTERP_PROFILE", "quick")   # the test suite runs these on "tiny"
ZOO = os.environ.get("INTERP_ZOO")                    # default: ~/.cache/interp/zoo
OUT = os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks")

# %%
from interp.organism import build_zoo
from interp.organism.cli import format_table

cards = build_zoo(PROFILE, ZOO, progress=False)   # reuses every model already built
print(format_table(cards))

# %% [markdown]
# Each model loads by spec, like any other model the toolkit supports (`hf:PATH`, `tl:NAME`).

# %%
from interp.models import load_model
from interp.organism import load_world, respond

base = load_model('organism:base')
world, tok = load_world(ZOO)
start, goal = world.split('test_id')[0]
prompt = f'Q n{start} n{goal} T'
print(prompt, '|', ' '.join(respond(base.module, tok, [prompt])[0]))
base.describe()

# %% [markdown]
# A paired cache: both models over identical token rows. The ID is what a paper cites.

# %%
from interp.cache import CacheConfig, build_paired_cache, verify_cache

config = CacheConfig(hooks=('blocks.*.hook_resid_post',), batch_size=32)
pair = build_paired_cache({'base': 'organism:base', 'tuned': 'organism:sft-answer'},
                          'organism:test_id', f'{OUT}/paired_resid', config, progress=False)
for label in pair.labels:
    print(label, pair[label].id, pair[label].n_rows, 'rows')
print(verify_cache(pair['base'].root, recompute=2, progress=False))

# %% [markdown]
# Read activations lazily, e.g. the last layer at every position, and compare the two models.

# %%
import torch

last = f'blocks.{base.n_layers - 1}.hook_resid_post'
a, b = pair['base'][last].to_tensor().float(), pair['tuned'][last].to_tensor().float()
cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
print(f'{last}: mean cosine base vs tuned {cos.mean():.3f} over {len(cos)} positions')
