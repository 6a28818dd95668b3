"""A chain-of-thought task for the faithfulness tests: problems, their steps, and how to force an answer.

A :class:`CotTask` holds, per problem, the question prompt and the model's own chain of thought
split into steps, with the cue that forces the answer, a function that reads it, and optional
edit functions (a mistake maker, a paraphraser) used by :mod:`probes.faithfulness`.
"""

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

MistakeMaker = Callable[[Any, list[str], int], "list[str] | None"]
Paraphraser = Callable[[Any, list[str]], "list[str] | None"]


@dataclass(frozen=True)
class CotTask:
    """Problems with the model's own chain of thought, and how to force and read an answer.

    Args:
        prompts: the question prompt of each problem (``Q n5 n22 T``).
        steps: the chain of thought of each problem as a list of steps (at least one each).
        answer_cue: the text appended to force the answer (``A`` for the organism).
        extract_answer: reads the answer from the text generated after the cue; ``None`` when
            there is none. A ``None`` answer never equals the reference answer.
        is_correct: ``is_correct(problem_index, answer) -> bool``; without it accuracies are NaN.
        problems: per-problem data handed to ``mistake_maker`` and ``paraphraser`` (default: the
            problem's index).
        joiner: put between the prompt, each step and the cue.
        filler: the word repeated in place of the chain of thought by the filler test.
        stop: a word that ends generation (kept), or ``None``.
        mistake_maker: ``(problem, steps, i) -> steps`` with step ``i`` corrupted, or ``None``
            when that step cannot be corrupted; without it the mistakes test is skipped.
        paraphraser: ``(problem, steps) -> steps``, an equivalent chain of thought, or ``None``
            when there is none; without it the paraphrase test is skipped.
        meta: free-form provenance, copied into results.

    Raises:
        ValueError: no problems, lengths that disagree, a problem with no steps or an empty
            step, or an empty cue or filler.

    Example:
        >>> t = CotTask(["Q 1"], [["a ;", "b ;"]], "A", lambda s: s.split()[0] if s else None)
        >>> t.n_problems, t.text(0, t.steps[0][:1])
        (1, 'Q 1 a ; A')
    """

    prompts: Sequence[str]
    steps: Sequence[Sequence[str]]
    answer_cue: str
    extract_answer: Callable[[str], Hashable | None]
    is_correct: Callable[[int, Any], bool] | None = None
    problems: Sequence[Any] | None = None
    joiner: str = " "
    filler: str = "..."
    stop: str | None = None
    mistake_maker: MistakeMaker | None = None
    paraphraser: Paraphraser | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        prompts = tuple(self.prompts)
        steps = tuple(tuple(s) for s in self.steps)
        if not prompts:
            raise ValueError("CotTask needs at least one problem; got no prompts")
        if len(steps) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists; expected one each")
        for i, s in enumerate(steps):
            if not s:
                raise ValueError(
                    f"problem {i} ({prompts[i]!r}) has an empty chain of thought; every problem "
                    "needs at least one step (drop problems the model answered without one)"
                )
            bad = [j for j, step in enumerate(s) if not isinstance(step, str) or not step.strip()]
            if bad:
                raise ValueError(f"problem {i} has empty or non-string steps at {bad}; expected text")
        problems = tuple(range(len(prompts))) if self.problems is None else tuple(self.problems)
        if len(problems) != len(prompts):
            raise ValueError(f"{len(problems)} problems for {len(prompts)} prompts; expected one each")
        for name in ("answer_cue", "filler"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}={getattr(self, name)!r}; expected a non-empty word")
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "problems", problems)

    @property
    def n_problems(self) -> int:
        return len(self.prompts)

    def text(self, i: int, steps: Sequence[str], cue: bool = True) -> str:
        """Problem ``i``'s prompt, then ``steps``, then (with ``cue``) the answer cue."""
        return self.joiner.join([self.prompts[i], *steps, *([self.answer_cue] if cue else [])])

    def correct(self, i: int, answer: Any) -> float:
        """1.0 or 0.0 by ``is_correct`` (``None`` answers are wrong); NaN without ``is_correct``."""
        if self.is_correct is None:
            return float("nan")
        return float(answer is not None and bool(self.is_correct(i, answer)))
