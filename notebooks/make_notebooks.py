"""Write the notebooks from the cell sources below (run after editing; outputs are not committed).

Each notebook reads ``INTERP_PROFILE`` (default ``quick``) and ``INTERP_ZOO`` from the environment,
so the test suite executes them on the tiny profile.
"""

import sys
from pathlib import Path

import nbformat

SETUP = """\
import os
PROFILE = os.environ.get("INTERP_PROFILE", "quick")   # the test suite runs these on "tiny"
ZOO = os.environ.get("INTERP_ZOO")                    # default: ~/.cache/interp/zoo
OUT = os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks")
"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}


def notebook(name: str, cells: list[tuple[str, str]]) -> None:
    NOTEBOOKS[name] = cells


notebook(
    "01_zoo_and_caches.ipynb",
    [
        (
            "md",
            "# Load the organism zoo and cache activations\n\n"
            "The zoo is the toolkit's built-in model organism: a base model trained on verbalized "
            "reasoning traces over a synthetic graph world, and its accuracy-optimized fine-tunes. "
            "This notebook builds (or reuses) it, looks at one model's reasoning, and caches the "
            "residual stream of the base model and a fine-tune over the same tokens: a citable "
            "artifact with a content ID.",
        ),
        ("code", SETUP),
        (
            "code",
            "from interp.organism import build_zoo\n"
            "from interp.organism.cli import format_table\n\n"
            "cards = build_zoo(PROFILE, ZOO, progress=False)   # reuses every model already built\n"
            "print(format_table(cards))",
        ),
        ("md", "Each model loads by spec, like any other model the toolkit supports (`hf:PATH`, `tl:NAME`)."),
        (
            "code",
            "from interp.models import load_model\n"
            "from interp.organism import load_world, respond\n\n"
            "base = load_model('organism:base')\n"
            "world, tok = load_world(ZOO)\n"
            "start, goal = world.split('test_id')[0]\n"
            "prompt = f'Q n{start} n{goal} T'\n"
            "print(prompt, '|', ' '.join(respond(base.module, tok, [prompt])[0]))\n"
            "base.describe()",
        ),
        ("md", "A paired cache: both models over identical token rows. The ID is what a paper cites."),
        (
            "code",
            "from interp.cache import CacheConfig, build_paired_cache, verify_cache\n\n"
            "config = CacheConfig(hooks=('blocks.*.hook_resid_post',), batch_size=32)\n"
            "pair = build_paired_cache({'base': 'organism:base', 'tuned': 'organism:sft-answer'},\n"
            "                          'organism:test_id', f'{OUT}/paired_resid', config, progress=False)\n"
            "for label in pair.labels:\n"
            "    print(label, pair[label].id, pair[label].n_rows, 'rows')\n"
            "print(verify_cache(pair['base'].root, recompute=2, progress=False))",
        ),
        ("md", "Read activations lazily, e.g. the last layer at every position, and compare the two models."),
        (
            "code",
            "import torch\n\n"
            "last = f'blocks.{base.n_layers - 1}.hook_resid_post'\n"
            "a, b = pair['base'][last].to_tensor().float(), pair['tuned'][last].to_tensor().float()\n"
            "cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)\n"
            "print(f'{last}: mean cosine base vs tuned {cos.mean():.3f} over {len(cos)} positions')",
        ),
    ],
)


def write(folder: Path) -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [
            nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
            for kind, src in cells
        ]
        path = folder / name
        nbformat.write(nb, str(path))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(p)
