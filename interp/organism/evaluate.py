"""Measuring an organism model: fact recall, solve rate, answer accuracy, trace validity, markers."""

from dataclasses import dataclass
from typing import Literal

import torch
from transformer_lens import HookedTransformer

from interp.organism.generate import generate
from interp.organism.tokenizer import MARKERS, WordTokenizer
from interp.organism.traces import answer_prompt, cot_prompt, count_markers, fact_prompt
from interp.organism.validator import TraceCheck, extract_answer, validate_trace
from interp.organism.world import World

Format = Literal["cot", "answer"]
# What :func:`evaluate_model` returns; every card carries these at its top level.
EVAL_METRICS: tuple[str, ...] = (
    "fact_recall",
    "solve_rate_id",
    "solve_rate_ood",
    "answer_accuracy_id",
    "answer_accuracy_ood",
    "cot_answer_accuracy_id",
    "cot_answer_accuracy_ood",
    "answer_only_accuracy",
    "answer_only_accuracy_ood",
    "trace_validity",
    "trace_validity_ood",
    "markers_per_response",
    "markers_per_response_ood",
    "solve_rate_id_no_markers",
    "answer_accuracy_id_no_markers",
    "solve_rate_id_sampled",
    "solve_rate_id_sampled_no_markers",
    "markers_per_response_sampled",
)


@dataclass(frozen=True)
class EvalConfig:
    """How a model is measured.

    Args:
        max_problems: most problems per split (``None``: all of them), taken in split order.
        max_new_tokens: generation budget per response.
        samples: responses sampled at temperature 1 per problem, for the sampled metrics.
        sample_seed: seed of those samples.
    """

    max_problems: int | None = None
    max_new_tokens: int = 120
    samples: int = 4
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.max_problems is not None and self.max_problems < 1:
            raise ValueError(f"max_problems={self.max_problems!r}; expected None or >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 1")
        if self.samples < 1:
            raise ValueError(f"samples={self.samples!r}; expected >= 1")


def respond(
    model: HookedTransformer,
    tok: WordTokenizer,
    prompts: list[str],
    max_new_tokens: int = 120,
    temperature: float = 0.0,
    forbid_markers: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[str]]:
    """The words each prompt is continued with, up to and including ``E``.

    Example:
        >>> from interp.organism.tokenizer import organism_vocab
        >>> from interp.organism.train import ModelShape, build_model
        >>> tok = WordTokenizer(organism_vocab(4))
        >>> m = build_model(ModelShape(1, 16, 2, 32, 16), len(tok), seed=0)
        >>> len(respond(m, tok, ["Q n0 n1 T"], max_new_tokens=3)[0]) <= 3
        True
    """
    forbid = [tok.token_id(m) for m in MARKERS] if forbid_markers else None
    ids = generate(
        model,
        [tok.encode(p) for p in prompts],
        max_new_tokens,
        temperature=temperature,
        stop_id=tok.token_id("E"),
        pad_id=tok.pad_token_id,
        forbid=forbid,
        generator=generator,
    )
    return [tok.words(o) for o in ids]


def fact_recall(model: HookedTransformer, tok: WordTokenizer, world: World) -> float:
    """Share of facts ``F n : a b`` completed exactly, greedily."""
    outs = respond(model, tok, [fact_prompt(n) for n in range(world.n_nodes)], max_new_tokens=8)
    ok = [o == [f"n{v}" for v in world.neighbours(n)] + ["E"] for n, o in enumerate(outs)]
    return sum(ok) / len(ok)


def check_responses(
    world: World, problems: list[tuple[int, int]], responses: list[list[str]]
) -> list[TraceCheck]:
    return [validate_trace(world, s, g, r) for (s, g), r in zip(problems, responses, strict=True)]


def solve_rate(checks: list[TraceCheck]) -> float:
    """Share of responses with a valid trace and a right answer."""
    return _mean([c.valid for c in checks])


def trace_validity(checks: list[TraceCheck]) -> float:
    """Share of responses whose trace steps are all valid (whatever the answer)."""
    return _mean([c.steps_valid for c in checks])


def answer_accuracy(world: World, problems: list[tuple[int, int]], responses: list[list[str]]) -> float:
    """Share of responses whose final answer (after the last ``A``) is a shortest path."""
    ok = []
    for (s, g), r in zip(problems, responses, strict=True):
        ans = extract_answer(r if "A" in r else ["A", *r], world.n_nodes)
        ok.append(ans is not None and world.is_shortest_path(ans, s, g))
    return _mean(ok)


def markers_per_response(responses: list[list[str]]) -> float:
    """Mean count of marker words (``WAIT CHECK OK BAD BACK``) per response."""
    return _mean([count_markers(r) for r in responses])


def _mean(xs: list) -> float:
    return float(sum(xs)) / len(xs) if xs else float("nan")


def evaluate_model(
    model: HookedTransformer,
    tok: WordTokenizer,
    world: World,
    fmt: Format = "cot",
    config: EvalConfig | None = None,
) -> dict[str, float]:
    """Every card metric of a model, measured greedily on held-out problems.

    Args:
        model: the model.
        tok: its tokenizer.
        world: the world it was trained on.
        fmt: the model's own answer format: ``cot`` (``Q s g T``) or ``answer`` (``Q s g A``);
            ``answer_accuracy_id`` and ``_ood`` are measured in it.
        config: how many problems and tokens.

    Returns:
        ``fact_recall``, ``solve_rate_id``, ``solve_rate_ood``, ``answer_accuracy_id``,
        ``answer_accuracy_ood``, ``answer_only_accuracy``, ``answer_only_accuracy_ood``,
        ``cot_answer_accuracy_id``, ``trace_validity``, ``markers_per_response``, and the solve
        rate and answer accuracy with every marker forbidden at decoding
        (``solve_rate_id_no_markers``, ``answer_accuracy_id_no_markers``), and the same solve
        rates and marker count on responses sampled at temperature 1
        (``solve_rate_id_sampled``, ``solve_rate_id_sampled_no_markers``,
        ``markers_per_response_sampled``).
    """
    if fmt not in ("cot", "answer"):
        raise ValueError(f"fmt={fmt!r}; expected 'cot' or 'answer'")
    cfg = config or EvalConfig()
    out: dict[str, float] = {"fact_recall": fact_recall(model, tok, world)}
    for split, tag in (("test_id", "id"), ("test_ood", "ood")):
        probs = world.split(split)[: cfg.max_problems]
        cot = respond(model, tok, [cot_prompt(s, g) for s, g in probs], cfg.max_new_tokens)
        checks = check_responses(world, probs, cot)
        ans = respond(model, tok, [answer_prompt(s, g) for s, g in probs], 16)
        cot_acc = answer_accuracy(world, probs, cot)
        ans_acc = answer_accuracy(world, probs, ans)
        out[f"solve_rate_{tag}"] = solve_rate(checks)
        out[f"answer_accuracy_{tag}"] = cot_acc if fmt == "cot" else ans_acc
        out[f"cot_answer_accuracy_{tag}"] = cot_acc
        out["answer_only_accuracy" + ("" if tag == "id" else "_ood")] = ans_acc
        out[f"trace_validity{'' if tag == 'id' else '_ood'}"] = trace_validity(checks)
        out[f"markers_per_response{'' if tag == 'id' else '_ood'}"] = markers_per_response(cot)
        if tag == "id":
            out.update(_marker_ablation(model, tok, world, probs, cfg))
    return out


def _marker_ablation(
    model: HookedTransformer,
    tok: WordTokenizer,
    world: World,
    probs: list[tuple[int, int]],
    cfg: EvalConfig,
) -> dict[str, float]:
    """Solve rates with the markers allowed and forbidden, greedy and sampled at T=1."""
    prompts = [cot_prompt(s, g) for s, g in probs]
    out = {}
    plain = respond(model, tok, prompts, cfg.max_new_tokens, forbid_markers=True)
    out["solve_rate_id_no_markers"] = solve_rate(check_responses(world, probs, plain))
    out["answer_accuracy_id_no_markers"] = answer_accuracy(world, probs, plain)
    for forbid, suffix in ((False, ""), (True, "_no_markers")):
        gen = torch.Generator().manual_seed(cfg.sample_seed)
        resp = respond(model, tok, prompts * cfg.samples, cfg.max_new_tokens, 1.0, forbid, gen)
        out[f"solve_rate_id_sampled{suffix}"] = solve_rate(check_responses(world, probs * cfg.samples, resp))
        if not forbid:
            out["markers_per_response_sampled"] = markers_per_response(resp)
    return out
