"""SEAL on the real model (PAPERS.md 9; Chen et al. 2025): steer the parent away from reflecting.

SEAL reads a direction from a reasoning model's own traces: the mean hidden state at the
boundaries that close *execution* thoughts minus the mean at those that close *reflection* (and
transition) thoughts, and adds it at every thought boundary while the model decodes, so that
fewer thoughts become reflections: fewer tokens, the same or better accuracy.

Here the model is the verbalising parent, whose answers run ``16 - 6 = 10. Let me check: 16 - 6
= 10. Correct.\\n``. A thought is the text between two step-end tokens (:data:`STEP_ENDS` of
:mod:`experiments.real.steer`: the full stop and the line break); :func:`step_kind` names it
execution (a calculation), reflection (a self-check, or a check's verdict such as ``Correct.``)
or other (``Answer: 10``); :func:`labelled_step_ends` puts those names on the step-end tokens
of a response. The vector (:func:`seal_vector`) is execution minus reflection at the middle
layer's ``hook_resid_post`` over the parent's own greedy answers to the test problems, rescaled to
that hook's mean activation norm over the same rows (:func:`steering.layer_choice.rescale_to_layer_norm`).

:func:`stage_seal` adds it at :data:`SEAL_SCALES` times that norm at every step-end token (prompt
included: the same selector as steer.py's ``targeted`` method, evaluated on the tokens seen so
far, so each cached decoding step steers where a full pass would) while the parent answers
``steer_problems`` test problems greedily; against the unsteered parent on the same problems:
tokens per response, self-check phrases per response and accuracy, each a paired bootstrap
interval; the control is a random direction of the same norm at the same positions and scales.
The organism's version (:func:`experiments.e9_cot_length.seal_run`) labels a boundary by the
thought that *follows* it; SEAL and this module label it by the thought it *closes*.
"""

import logging
import re
from typing import Any

from experiments.real.common import correct_list, fmt_iv, load, mean, paired, self_checks, verdict
from experiments.real.profile import SELF_CHECK
from experiments.real.tunes import State

log = logging.getLogger(__name__)

SEAL_SCALES = (0.5, 1.0)
"""Multiples of the layer's mean activation norm the vector is added at. Set for the runtime
budget (each scale costs two greedy generations, the vector's and the control's), not from any
result; the organism's SEAL used up to 1x."""

MIN_STEP_ENDS = 10
"""Fewest step-end tokens on each side (execution, reflection) for a vector. A response holds two
to four steps, so below this the mean is that of one or two answers: the noise of a handful of
tokens, not a kind of step; and a parent that reflects that rarely leaves nothing to cut. Set
before any measurement."""

STEP_KINDS = ("execution", "reflection", "other")

_CHECK = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, SELF_CHECK)) + r")(?!\w)", re.I)
_VERDICT = re.compile(r"^\W*(?:that is |that's )?(correct|incorrect|right|wrong)\W*$", re.I)
_CALC = re.compile(r"\d\s*[-+*/x×]\s*\d+\s*=\s*-?\d")


def step_kind(sentence: str) -> str:
    """What one step of an answer does: ``reflection``, ``execution`` or ``other``.

    Reflection: the step holds a self-check phrase (:data:`~experiments.real.profile.SELF_CHECK`,
    whole words, any case) or is only a check's verdict (``Correct.``, ``That's wrong.``).
    Execution: otherwise, a calculation ``a op b = c``. Anything else (``Answer: 7``, prose) is
    ``other``.

    Example:
        >>> [step_kind(s) for s in ("16 - 6 = 10.", " Let me check: 16 - 6 = 10.", " Correct.", "Answer: 10")]
        ['execution', 'reflection', 'reflection', 'other']
    """
    if _CHECK.search(sentence) or _VERDICT.match(sentence):
        return "reflection"
    if _CALC.search(sentence):
        return "execution"
    return "other"


def labelled_step_ends(
    model: Any, ids: list[int], ends: "set[int] | frozenset[int]"
) -> list[tuple[int, str]]:
    """``(index, kind)`` of every step-end token in ``ids`` (a response, no prompt), with the
    :func:`step_kind` of the step it closes: the text decoded since the previous step-end token.

    A step end that closes nothing but white space (the ``\\n`` of ``Correct.\\n``) belongs to
    the step before it and takes its kind.
    """
    out: list[tuple[int, str]] = []
    start = 0
    for j, t in enumerate(ids):
        if t not in ends:
            continue
        body = model.decode(ids[start:j])
        kind = out[-1][1] if not body.strip() and out else step_kind(body)
        out.append((j, kind))
        start = j + 1
    return out


def seal_vector(
    model: Any, prompts: list[list[int]], responses: list[str], hook: str
) -> tuple[Any, dict[str, Any]]:
    """SEAL's execution-minus-reflection vector at ``hook``, read over the model's own answers.

    Each row is ``prompt + response`` (the response encoded without special tokens); the positive
    side is the step-end tokens that close an execution step, the negative side those that close
    a reflection step (:func:`labelled_step_ends`); the difference of means
    (:func:`steering.layer_choice.contrast_vector`) is rescaled to the hook's mean activation norm
    over the same rows.

    Returns:
        ``(vector, info)``: ``vector`` is ``None`` when the tokenizer has no one-token step end or
        either side has fewer than :data:`MIN_STEP_ENDS` step ends (``info["why"]`` says which);
        ``info`` counts the step ends per kind and the rows used.
    """
    from experiments.real.steer import step_end_ids
    from steering.layer_choice import contrast_vector, rescale_to_layer_norm

    ends = frozenset(step_end_ids(model))
    rows, pos, neg = [], [], []
    counts = dict.fromkeys(STEP_KINDS, 0)
    skipped = 0
    for prompt, text in zip(prompts, responses, strict=True):
        ids = model.encode(text, add_special_tokens=False)
        if not ids or len(prompt) + len(ids) > model.n_ctx:
            skipped += 1
            continue
        labels = labelled_step_ends(model, ids, ends)
        for _, kind in labels:
            counts[kind] += 1
        rows.append(list(prompt) + ids)
        pos.append([len(prompt) + j for j, k in labels if k == "execution"])
        neg.append([len(prompt) + j for j, k in labels if k == "reflection"])
    info: dict[str, Any] = {
        "hook": hook,
        "step_end_ids": sorted(ends),
        "n_rows": len(rows),
        "n_rows_skipped": skipped,
        "n_execution": counts["execution"],
        "n_reflection": counts["reflection"],
        "n_other": counts["other"],
        "min_step_ends": MIN_STEP_ENDS,
    }
    if not ends:
        info["why"] = "the tokenizer has no step end ('.', '\\n') as one token"
        return None, info
    if min(counts["execution"], counts["reflection"]) < MIN_STEP_ENDS:
        info["why"] = (
            f"the answers hold {counts['execution']} step ends that close an execution step and "
            f"{counts['reflection']} that close a reflection step; a vector needs at least "
            f"{MIN_STEP_ENDS} of each"
        )
        return None, info
    raw = contrast_vector(
        model,
        rows,
        pos,
        neg,
        hook,
        contrast={"name": "seal-execution-minus-reflection", "labels": "closing step"},
    )
    vec = rescale_to_layer_norm(raw, model, rows)
    info["raw_norm"] = raw.norms()[hook]
    info["vector_norm"] = vec.norms()[hook]
    return vec, info


def random_control(vec: Any, hook: str, seed: int = 0) -> Any:
    """A random direction of ``vec``'s norm at ``hook`` (:func:`steering.vectors.random_direction`)."""
    from steering.vectors import SteeringVector, random_direction

    return SteeringVector(
        {hook: random_direction(vec.d_model, vec.norms()[hook], seed=seed)},
        {**vec.meta, "method": "random", "provenance": {"source": f"randn, seed {seed}, same norm"}},
    )


def answer(
    model: Any, problems: Any, max_new_tokens: int, vec: Any = None, scale: float = 0.0, selector: Any = None
):
    """Greedy answers to ``problems``, steered by ``scale * vec`` at ``selector``'s positions when
    ``vec`` is given: per problem the text, the tokens generated, self-checks, correctness, and
    the positions steered in the prompt and in the response."""
    from contextlib import nullcontext

    import torch

    from probes.task_metrics import respond

    ctx = nullcontext() if vec is None else vec.apply(model, scale=scale, positions=selector)
    with ctx:
        r = respond(model, problems, max_new_tokens)
    texts, ids = r.first(), [s[0] for s in r.ids]
    out: dict[str, Any] = {
        "texts": texts,
        "tokens": [len(i) for i in ids],
        "self_checks": self_checks(texts),
        "correct": correct_list(problems, texts),
    }
    if selector is not None:
        hits = [
            selector.mask(torch.tensor([list(p) + list(i)]))[0] for p, i in zip(r.prompts, ids, strict=True)
        ]
        out["steered_prompt"] = [int(h[: len(p)].sum()) for h, p in zip(hits, r.prompts, strict=True)]
        out["steered_response"] = [int(h[len(p) :].sum()) for h, p in zip(hits, r.prompts, strict=True)]
    return out


_METRICS = (("tokens", "tokens"), ("self_checks", "self_checks"), ("accuracy", "correct"))


def _compare(run: dict[str, Any], ref: dict[str, Any], resamples: int) -> dict[str, Any]:
    """Means of ``run`` and its paired differences from ``ref`` (same problems)."""
    out: dict[str, Any] = {"per_problem": {k: run[k] for k in ("tokens", "self_checks", "correct")}}
    for name, key in _METRICS:
        out[f"{name}_per_response" if name != "accuracy" else name] = mean(run[key])
        out[f"{name}_diff"] = paired(run[key], ref[key], resamples)
    if "steered_response" in run:
        out["steered_prompt_per_problem"] = mean(run["steered_prompt"])
        out["steered_response_per_response"] = mean(run["steered_response"])
    out["example"] = run["texts"][0]
    return out


def stage_seal(state: State) -> dict[str, Any]:
    """SEAL's vector from the parent's answers, added at step ends while the parent answers.

    Needs stages base, parent and tunes (``state.evals["parent"]["responses"]``). The vector is
    read over every test problem's answer; the steered runs answer the profile's
    ``steer_problems`` of them (greedy, ``max_new_tokens``), unsteered, then per scale of
    :data:`SEAL_SCALES` with the vector and with a random direction of its norm.

    Returns:
        The counts of :func:`seal_vector`, ``unsteered`` means, per scale ``scales[s]`` (the
        vector against unsteered, and ``vs_random``: against the control) and ``random[s]`` (the
        control against unsteered), and ``claim`` (:func:`claim`).
    """
    from experiments.real.steer import step_end_ids
    from interp.selectors import AtTokens
    from interp.tasks.render import render_prompt

    p = state.profile
    parent = load(state.parent)
    hook = f"blocks.{parent.n_layers // 2}.hook_resid_post"
    prompts = [render_prompt(parent, ex.prompt) for ex in state.problems.examples]
    vec, info = seal_vector(parent, prompts, state.evals["parent"]["responses"], hook)
    log.info("seal: vector read (%s)", info.get("why", "ok"))
    out: dict[str, Any] = {**info, "scales": {}, "random": {}}
    if vec is None:
        out["claim"] = verdict("not testable", info["why"])
        return out
    problems = state.problems.subset(p.steer_problems)
    selector = AtTokens(step_end_ids(parent))
    control = random_control(vec, hook)
    base = answer(parent, problems, p.max_new_tokens)
    stored = dict(
        zip((ex.id for ex in state.problems.examples), state.evals["parent"]["responses"], strict=True)
    )
    out.update(
        n_problems=len(problems),
        problems="steer_problems",
        max_new_tokens=p.max_new_tokens,
        control_norm=control.norms()[hook],
        unsteered={
            "tokens_per_response": mean(base["tokens"]),
            "self_checks_per_response": mean(base["self_checks"]),
            "accuracy": mean(base["correct"]),
            "per_problem": {k: base[k] for k in ("tokens", "self_checks", "correct")},
            "same_as_stored": sum(
                t == stored[ex.id] for ex, t in zip(problems.examples, base["texts"], strict=True)
            ),
        },
    )
    log.info("seal: unsteered parent answered %d problems", len(problems))
    for s in SEAL_SCALES:
        steered = answer(parent, problems, p.max_new_tokens, vec, s, selector)
        rand = answer(parent, problems, p.max_new_tokens, control, s, selector)
        log.info("seal: scale %s answered (vector and random control)", s)
        m = _compare(steered, base, p.resamples)
        m["vs_random"] = {f"{n}_diff": paired(steered[k], rand[k], p.resamples) for n, k in _METRICS}
        out["scales"][str(s)] = m
        out["random"][str(s)] = _compare(rand, base, p.resamples)
    out["claim"] = claim(out)
    return out


def _down(d: dict[str, Any]) -> bool:
    return d["excludes_0"] and d["estimate"] < 0


def _iv(d: dict[str, Any], digits: int = 2) -> str:
    f = f"{{:+.{digits}f}}"
    return f"{f.format(d['estimate'])} [{f.format(d['low'])}, {f.format(d['high'])}]"


def claim(r: dict[str, Any]) -> dict[str, Any]:
    """SEAL reproduced at a scale where tokens per response fall (interval below 0), accuracy does
    not (its interval not below 0) and the token cut beats the random control (vector - control
    on tokens, interval below 0); ``scales`` lists those scales."""
    passed, parts = [], []
    for s, m in r["scales"].items():
        c, vs = r["random"][s], m["vs_random"]
        ok = {
            "tokens fall": _down(m["tokens_diff"]),
            "accuracy holds": not _down(m["accuracy_diff"]),
            "beats the control": _down(vs["tokens_diff"]),
        }
        if all(ok.values()):
            passed.append(s)
        failed = [k for k, v in ok.items() if not v]
        parts.append(
            f"x{s}: tokens {_iv(m['tokens_diff'], 1)} (random {_iv(c['tokens_diff'], 1)}, vector - random "
            f"{_iv(vs['tokens_diff'], 1)}), self-checks {_iv(m['self_checks_diff'])} (random "
            f"{_iv(c['self_checks_diff'])}), accuracy {_iv(m['accuracy_diff'])} (random "
            f"{_iv(c['accuracy_diff'])}, vector - random {_iv(vs['accuracy_diff'])})"
            + (f"; fails: {', '.join(failed)}" if failed else "; passes")
        )
    u = r["unsteered"]
    numbers = (
        f"unsteered parent on {r['n_problems']} problems: {u['tokens_per_response']:.1f} tokens, "
        f"{u['self_checks_per_response']:.2f} self-checks per response, accuracy {u['accuracy']:.2f}; "
        + "; ".join(parts)
    )
    if passed:
        return verdict(
            "reproduced",
            f"the execution-minus-reflection vector at step ends shortens the parent's answers without "
            f"losing accuracy, beyond a random direction of its norm, at scales {passed}: {numbers}",
            scales=passed,
        )
    return verdict(
        "not reproduced",
        f"no scale shortens the answers (interval below 0) without losing accuracy and beyond a random "
        f"direction of the same norm at the same positions: {numbers}",
        scales=[],
    )


def report_lines(r: "dict[str, Any] | None") -> list[str]:
    """The markdown section of the SEAL stage (for REPORT.md's real-model part)."""
    if not r:
        return []
    title = "### Overthinking control (SEAL) on the parent"
    if not r.get("scales"):
        return [title, "", f"**{r['claim']['verdict']}**: {r['claim']['why']}", ""]
    u = r["unsteered"]
    out = [
        title,
        "",
        f"Vector at `{r['hook']}`: mean over the {r['n_execution']} step-end tokens that close an execution "
        f"step (a calculation) minus over the {r['n_reflection']} that close a reflection step (a self-check "
        f"or its verdict) in the parent's {r['n_rows']} greedy answers, rescaled to the layer's mean norm "
        f"({r['vector_norm']:.2f}; the raw difference {r['raw_norm']:.2f}). Added at every step-end token "
        f"{r['step_end_ids']} (prompt included, through the KV cache) while the parent answers "
        f"{r['n_problems']} test problems greedily ({r['max_new_tokens']} new tokens); control: a random "
        f"direction of the same norm at the same positions and scales. Unsteered: "
        f"{u['tokens_per_response']:.1f} tokens, {u['self_checks_per_response']:.2f} self-checks per "
        "response, "
        f"accuracy {u['accuracy']:.2f}.",
        "",
        "| vector | scale | tokens / response | tokens diff | self-checks / response | self-checks diff "
        "| accuracy | accuracy diff | steered in prompt / response |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("scales", "SEAL"), ("random", "random, same norm")):
        for s, m in r[kind].items():
            out.append(
                f"| {label} | {s} | {m['tokens_per_response']:.1f} | {fmt_iv(m['tokens_diff'], 1)} | "
                f"{m['self_checks_per_response']:.2f} | {fmt_iv(m['self_checks_diff'], 2)} | "
                f"{m['accuracy']:.2f} | {fmt_iv(m['accuracy_diff'], 2)} | "
                f"{m['steered_prompt_per_problem']:.1f} / {m['steered_response_per_response']:.1f} |"
            )
    for s, m in r["scales"].items():
        vs = m["vs_random"]
        out.append(
            f"| SEAL - random | {s} | | {fmt_iv(vs['tokens_diff'], 1)} | | "
            f"{fmt_iv(vs['self_checks_diff'], 2)} | | {fmt_iv(vs['accuracy_diff'], 2)} | |"
        )
    return out + ["", f"**{r['claim']['verdict']}**: {r['claim']['why']}", ""]
