"""Self-distillation data: a model's own sampled responses, filtered to the correct ones.

The setting of Kim et al. (PAPERS.md, finding 4): a model is fine-tuned on what it itself
wrote, keeping only responses that a verifier accepts. Nobody edits the texts; whatever
happens to the markers (``WAIT CHECK ...``) is what selection on correctness does to them.
"""

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformer_lens import HookedTransformer

from interp.errors import InterpError
from interp.organism.evaluate import respond
from interp.organism.tokenizer import WordTokenizer
from interp.organism.traces import Example, cot_prompt
from interp.organism.validator import validate_trace
from interp.organism.world import World

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DistillConfig:
    """How the self-distillation data is drawn.

    Args:
        split: the problems sampled (``train``: the parent's own training problems).
        samples_per_problem: responses sampled per problem at ``temperature``.
        temperature: sampling temperature.
        max_new_tokens: response budget.
        max_problems: most problems used (``None``: the whole split, in its stored order).
        keep: ``all`` keeps every valid response; ``shortest`` keeps, per problem, the
            shortest valid one (rejection sampling's usual "best of n" by length).
        seed: seeds the sampling.
    """

    split: str = "train"
    samples_per_problem: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 120
    max_problems: int | None = None
    keep: str = "all"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples_per_problem < 1:
            raise ValueError(f"samples_per_problem={self.samples_per_problem!r}; expected >= 1")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r}; expected > 0")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 1")
        if self.max_problems is not None and self.max_problems < 1:
            raise ValueError(f"max_problems={self.max_problems!r}; expected None or >= 1")
        if self.keep not in ("all", "shortest"):
            raise ValueError(f"keep={self.keep!r}; expected 'all' or 'shortest'")

    def to_dict(self) -> dict:
        return asdict(self)


class DistillError(InterpError, ValueError):
    """No self-distillation data: the parent solved none of the problems it sampled."""


class FixedExamples:
    """Draws uniformly, with its own seeded RNG, from a fixed list of examples.

    It has the ``batch(n)`` of :class:`~interp.organism.traces.ExampleSampler`, so
    :func:`~interp.organism.train.train_lm` trains on it the same way. ``stats`` says how the
    list was made.
    """

    def __init__(self, examples: list[Example], seed: int, stats: dict | None = None) -> None:
        if not examples:
            raise DistillError(
                "no examples to draw from: the parent solved none of the sampled problems; "
                "train the parent longer or sample more (DistillConfig.samples_per_problem)"
            )
        self.examples = examples
        self.rng = np.random.default_rng(seed)
        self.stats = dict(stats or {})

    def batch(self, n: int) -> list[Example]:
        return [self.examples[int(i)] for i in self.rng.integers(0, len(self.examples), size=n)]


def distilled_sampler(
    model: HookedTransformer, tok: WordTokenizer, world: World, cfg: DistillConfig, seed: int
) -> FixedExamples:
    """The parent's own correct responses, ready to train on.

    Args:
        model: the parent (its responses are the data).
        tok: its tokenizer.
        world: the world (the verifier's ground truth).
        cfg: what to sample and keep.
        seed: seeds the draw order during training.

    Returns:
        A :class:`FixedExamples` whose ``stats`` hold ``problems``, ``samples``, ``kept``,
        ``problems_with_a_kept_sample`` and ``markers_per_kept_response`` (the parent's markers
        in the kept data, against ``markers_per_sample`` over all samples).
    """
    from interp.organism.traces import count_markers

    problems = world.split(cfg.split)[: cfg.max_problems]
    rows = [p for p in problems for _ in range(cfg.samples_per_problem)]
    gen = torch.Generator().manual_seed(cfg.seed)
    prompts = [cot_prompt(s, g) for s, g in rows]
    responses = respond(model, tok, prompts, cfg.max_new_tokens, cfg.temperature, False, gen)
    kept: dict[tuple[int, int], list[list[str]]] = {}
    for (s, g), resp in zip(rows, responses, strict=True):
        if validate_trace(world, s, g, resp).valid:
            kept.setdefault((s, g), []).append(resp)
    examples = []
    for (s, g), resps in kept.items():
        chosen = [min(resps, key=len)] if cfg.keep == "shortest" else resps
        for r in chosen:
            prompt = cot_prompt(s, g).split()
            examples.append(Example(prompt + r, len(prompt), [0.0] * len(prompt) + [1.0] * len(r)))
    stats = {
        "problems": len(problems),
        "samples": len(rows),
        "kept": len(examples),
        "problems_with_a_kept_sample": len(kept),
        "markers_per_sample": float(np.mean([count_markers(r) for r in responses])) if responses else 0.0,
        "markers_per_kept_response": float(np.mean([count_markers(e.words) for e in examples]))
        if examples
        else 0.0,
    }
    log.info(
        "self-distillation data: %d of %d samples kept (%d problems); markers %.2f kept vs %.2f all",
        stats["kept"], stats["samples"], stats["problems_with_a_kept_sample"],
        stats["markers_per_kept_response"], stats["markers_per_sample"],
    )
    return FixedExamples(examples, seed, stats)
