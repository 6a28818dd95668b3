"""Measuring an organism model: fact recall, solve rate, answer accuracy, trace validity, markers."""

from dataclasses import dataclass
from typing import Literal

import torch
from transformer_lens import HookedTransformer

from interp.organism.generate import generate
from interp.organism.tokenizer import MARKERS, WordTokenizer
from interp.organism.traces import (
    answer_prompt,
    attr_prompt,
    cot_prompt,
    count_markers,
    fact_prompt,
)
from interp.organism.validator import TraceCheck, extract_answer, validate_trace
from interp.organism.world import World, colour_name

Format = Literal["cot", "answer"]
# The held-out splits a card measures, and the tag each one's metrics carry.
SPLIT_TAGS: dict[str, str] = {"test_id": "id", "test_ood": "ood", "test_comp": "comp", "test_start": "start"}
_ID_ONLY = (
    "solve_rate_id_no_markers",
    "answer_accuracy_id_no_markers",
    "solve_rate_id_sampled",
    "solve_rate_id_sampled_no_markers",
    "markers_per_response_sampled",
)


def _split_metrics(tag: str) -> tuple[str, ...]:
    suffix = "" if tag == "id" else f"_{tag}"
    return (
        f"solve_rate_{tag}",
        f"answer_accuracy_{tag}",
        f"cot_answer_accuracy_{tag}",
        f"answer_only_accuracy{suffix}",
        f"trace_validity{suffix}",
        f"markers_per_response{suffix}",
    )


# What :func:`evaluate_model` returns with the default :class:`EvalConfig`; every card carries these.
EVAL_METRICS: tuple[str, ...] = (
    "fact_recall",
    "attr_recall",
    *(m for tag in SPLIT_TAGS.values() for m in _split_metrics(tag)),
    *_ID_ONLY,
)


@dataclass(frozen=True)
class EvalConfig:
    """How a model is measured.

    Args:
        max_problems: most problems per split (``None``: all of them), taken in split order
            (each split is stored in a seeded random order, so this is a random sample).
        max_new_tokens: generation budget per response.
        samples: responses sampled at temperature 1 per problem, for the sampled metrics
            (0: none, and no marker ablation either).
        sample_seed: seed of those samples.
        splits: the held-out splits measured (some of ``test_id``, ``test_ood``, ``test_comp``).
        marker_ablation: also decode ``test_id`` with every marker forbidden (greedy, and
            sampled when ``samples > 0``).
    """

    max_problems: int | None = None
    max_new_tokens: int = 120
    samples: int = 4
    sample_seed: int = 0
    splits: tuple[str, ...] = ("test_id", "test_ood", "test_comp", "test_start")
    marker_ablation: bool = True

    def __post_init__(self) -> None:
        if self.max_problems is not None and self.max_problems < 1:
            raise ValueError(f"max_problems={self.max_problems!r}; expected None or >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r}; expected >= 1")
        if self.samples < 0:
            raise ValueError(f"samples={self.samples!r}; expected >= 0")
        unknown = sorted(set(self.splits) - set(SPLIT_TAGS))
        if unknown or not self.splits:
            raise ValueError(f"splits={self.splits!r}; expected some of {tuple(SPLIT_TAGS)}")

    def metric_names(self) -> tuple[str, ...]:
        """The keys :func:`evaluate_model` returns under this configuration."""
        names = ["fact_recall", "attr_recall"]
        for split in self.splits:
            names += _split_metrics(SPLIT_TAGS[split])
        if "test_id" in self.splits and self.marker_ablation:
            names += ["solve_rate_id_no_markers", "answer_accuracy_id_no_markers"]
            if self.samples > 0:
                names += ["solve_rate_id_sampled", "solve_rate_id_sampled_no_markers"]
                names += ["markers_per_response_sampled"]
        return tuple(names)


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


def facts_correct(model: HookedTransformer, tok: WordTokenizer, world: World) -> list[bool]:
    """Per node: is its fact ``F n : a b`` completed exactly, greedily?"""
    outs = respond(model, tok, [fact_prompt(n) for n in range(world.n_nodes)], max_new_tokens=8)
    return [o == [f"n{v}" for v in world.neighbours(n)] + ["E"] for n, o in enumerate(outs)]


def attrs_correct(model: HookedTransformer, tok: WordTokenizer, world: World) -> list[bool]:
    """Per node: is its attribute fact ``F n C`` | ``c E`` completed exactly, greedily?"""
    outs = respond(model, tok, [attr_prompt(n) for n in range(world.n_nodes)], max_new_tokens=3)
    return [o == [colour_name(world.colour(n)), "E"] for n, o in enumerate(outs)]


def fact_recall(model: HookedTransformer, tok: WordTokenizer, world: World) -> float:
    """Share of facts ``F n : a b`` completed exactly, greedily."""
    return _mean(facts_correct(model, tok, world))


def attr_recall(model: HookedTransformer, tok: WordTokenizer, world: World) -> float:
    """Share of attribute facts ``F n C`` | ``c E`` completed exactly, greedily."""
    return _mean(attrs_correct(model, tok, world))


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


def answers_correct(
    world: World, problems: list[tuple[int, int]], responses: list[list[str]]
) -> list[bool]:
    """Per response: is its final answer (after the last ``A``) a shortest path?"""
    ok = []
    for (s, g), r in zip(problems, responses, strict=True):
        ans = extract_answer(r if "A" in r else ["A", *r], world.n_nodes)
        ok.append(ans is not None and world.is_shortest_path(ans, s, g))
    return ok


def answer_accuracy(world: World, problems: list[tuple[int, int]], responses: list[list[str]]) -> float:
    """Share of responses whose final answer (after the last ``A``) is a shortest path."""
    return _mean(answers_correct(world, problems, responses))


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
    details: dict[str, list] | None = None,
) -> dict[str, float]:
    """Every card metric of a model, measured greedily on held-out problems.

    Args:
        model: the model.
        tok: its tokenizer.
        world: the world it was trained on.
        fmt: the model's own answer format: ``cot`` (``Q s g T``) or ``answer`` (``Q s g A``);
            ``answer_accuracy_<split>`` is measured in it.
        config: which splits, how many problems, samples and tokens.
        details: when given, filled with per-problem lists (for intervals over problems):
            ``fact_correct`` and ``attr_correct`` (per node), ``problems_<tag>``,
            ``solved_<tag>`` (valid trace and right answer, greedy), ``trace_valid_<tag>``,
            ``answer_correct_<tag>`` (own format), ``answer_only_correct_<tag>``,
            ``markers_<tag>``, and for ``test_id`` with marker ablation ``solved_id_no_markers``
            and, with samples, ``solved_id_sampled`` / ``solved_id_sampled_no_markers``
            (``samples`` consecutive entries per problem).

    Returns:
        The keys of ``config.metric_names()``: fact and attribute recall, then per split
        (tags ``id``, ``ood``, ``comp``) solve rate, answer accuracy in the model's own format,
        accuracy of the answer after a trace, answer-only accuracy, trace validity and markers
        per response; and on ``test_id`` the solve rate and answer accuracy with every marker
        forbidden at decoding, and solve rates and markers of responses sampled at T=1.
    """
    if fmt not in ("cot", "answer"):
        raise ValueError(f"fmt={fmt!r}; expected 'cot' or 'answer'")
    cfg = config or EvalConfig()
    det: dict[str, list] = {} if details is None else details
    det["fact_correct"] = [int(x) for x in facts_correct(model, tok, world)]
    det["attr_correct"] = [int(x) for x in attrs_correct(model, tok, world)]
    out: dict[str, float] = {
        "fact_recall": _mean(det["fact_correct"]),
        "attr_recall": _mean(det["attr_correct"]),
    }
    for split in cfg.splits:
        tag = SPLIT_TAGS[split]
        suffix = "" if tag == "id" else f"_{tag}"
        probs = world.split(split)[: cfg.max_problems]
        cot = respond(model, tok, [cot_prompt(s, g) for s, g in probs], cfg.max_new_tokens)
        checks = check_responses(world, probs, cot)
        ans = respond(model, tok, [answer_prompt(s, g) for s, g in probs], world.config.max_ood_dist + 3)
        cot_ok = answers_correct(world, probs, cot)
        ans_ok = answers_correct(world, probs, ans)
        det[f"problems_{tag}"] = [list(p) for p in probs]
        det[f"solved_{tag}"] = [int(c.valid) for c in checks]
        det[f"trace_valid_{tag}"] = [int(c.steps_valid) for c in checks]
        det[f"answer_correct_{tag}"] = [int(x) for x in (cot_ok if fmt == "cot" else ans_ok)]
        det[f"answer_only_correct_{tag}"] = [int(x) for x in ans_ok]
        det[f"markers_{tag}"] = [count_markers(r) for r in cot]
        out[f"solve_rate_{tag}"] = solve_rate(checks)
        out[f"answer_accuracy_{tag}"] = _mean(cot_ok if fmt == "cot" else ans_ok)
        out[f"cot_answer_accuracy_{tag}"] = _mean(cot_ok)
        out[f"answer_only_accuracy{suffix}"] = _mean(ans_ok)
        out[f"trace_validity{suffix}"] = trace_validity(checks)
        out[f"markers_per_response{suffix}"] = markers_per_response(cot)
        if tag == "id" and cfg.marker_ablation:
            out.update(_marker_ablation(model, tok, world, probs, cfg, det))
    return out


def _marker_ablation(
    model: HookedTransformer,
    tok: WordTokenizer,
    world: World,
    probs: list[tuple[int, int]],
    cfg: EvalConfig,
    det: dict[str, list],
) -> dict[str, float]:
    """Solve rates with the markers allowed and forbidden, greedy and sampled at T=1."""
    prompts = [cot_prompt(s, g) for s, g in probs]
    out = {}
    plain = respond(model, tok, prompts, cfg.max_new_tokens, forbid_markers=True)
    checks = check_responses(world, probs, plain)
    det["solved_id_no_markers"] = [int(c.valid) for c in checks]
    out["solve_rate_id_no_markers"] = solve_rate(checks)
    out["answer_accuracy_id_no_markers"] = answer_accuracy(world, probs, plain)
    if cfg.samples == 0:
        return out
    for forbid, suffix in ((False, ""), (True, "_no_markers")):
        gen = torch.Generator().manual_seed(cfg.sample_seed)
        rows = [p for p in probs for _ in range(cfg.samples)]
        resp = respond(model, tok, [cot_prompt(s, g) for s, g in rows], cfg.max_new_tokens, 1.0, forbid, gen)
        checks = check_responses(world, rows, resp)
        det[f"solved_id_sampled{suffix}"] = [int(c.valid) for c in checks]
        out[f"solve_rate_id_sampled{suffix}"] = solve_rate(checks)
        if not forbid:
            out["markers_per_response_sampled"] = markers_per_response(resp)
    return out
