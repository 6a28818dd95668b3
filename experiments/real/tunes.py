"""Stages 1-3: the base model measured, a (verbalising) parent, and accuracy-optimised tunes of it.

1. base: the facts it knows (split into rehearsed and held-out), greedy chat answers to the
   arithmetic test problems, accuracy and self-check phrases per response.
2. parent: the base when it says self-check phrases often enough; otherwise ``sft-verbalise``
   makes a parent that does (DESIGN.md: a 135M model does not say "wait" on its own).
3. tunes: ``sft-answer`` at a dose axis and, when the profile has steps for it, ``sft-self``;
   each checked against its precondition: did it raise accuracy over the parent?
"""

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.real.common import load, paired
from experiments.real.evaluate import evaluate_stored, summary
from experiments.real.profile import PARENT_THRESHOLD, RealProfile

log = logging.getLogger(__name__)

MAX_LEN = 256  # a prompt with the chat template's system turn is ~85 tokens; a checked solution ~120
SELF_MAX_LEN = 200  # sft-self samples up to this length: a checked solution fits, rambling stops early


@dataclass
class State:
    """What the stages hand on to each other."""

    spec: str
    profile: RealProfile
    out: Path
    progress: bool = True
    facts: Any = None  # every known fact (rehearsed and held-out): rehearsal and exclusion
    facts_eval: Any = None  # at most n_eval_facts per split: measured per checkpoint
    problems: Any = None  # arithmetic test problems
    parent: str = ""
    tunes: dict[str, str] = field(default_factory=dict)  # label -> spec, along the dose axis
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> evaluate(...)
    strongest: str = ""  # the label of the strongest sft-answer dose (knowledge damage)
    focus: str = ""  # the accuracy tune that findings (b)-(d) study: see choose_focus

    @property
    def evals_dir(self) -> Path:
        """Where each checkpoint's evaluation is kept for a rerun (keyed by its fingerprint)."""
        return self.out / "evals"

    def model(self, label: str) -> Any:
        return load(self.spec_of(label))

    def spec_of(self, label: str) -> str:
        return {"base": self.spec, "parent": self.parent, **self.tunes}[label]


def _known(model: Any, profile: RealProfile) -> tuple[Any, dict[str, Any]]:
    """The offered facts the model answers correctly (greedy), split into rehearsed and held-out
    by :func:`interp.tasks.facts.known_facts`; a model that knows too few for two splits (the
    tests' tiny random model) gets the offered facts unfiltered, and the note says so."""
    from interp.tasks import TaskError
    from interp.tasks.facts import facts_task, known_facts, split_of

    offered = facts_task(n=profile.n_facts, seed=0)
    try:
        known = known_facts(model, offered, batch_size=32)
        note = f"{len(known)} of {len(offered)} offered facts answered correctly by the base (greedy)"
        kept = len(known)
    except TaskError:
        known, kept = None, 0
    if known is None or len(known.splits) < 2:
        # a model that knows (almost) nothing: keep the plumbing going on unfiltered facts
        examples = [replace(ex, split=split_of(ex.id, 0, 0.5)) for ex in offered.examples]
        known = offered.with_examples(
            examples, known={"model": model.fingerprint, "kept": 0, "of": len(offered)}
        )
        note = f"the base answers too few of {len(offered)} facts for two splits: facts used unfiltered"
    info = {
        "offered": len(offered),
        "known": kept,
        "note": note,
        "splits": {s: len(known.split(s)) for s in known.splits},
    }
    return known, info


def stage_base(state: State) -> dict[str, Any]:
    """Load the base, filter the facts it knows, answer the test problems."""
    from interp.tasks.arithmetic import arithmetic_task

    p = state.profile
    model = load(state.spec)
    state.facts, facts_info = _known(model, p)
    parts = [
        ex for s in ("rehearsed", "heldout") for ex in state.facts.split(s).subset(p.n_eval_facts).examples
    ]
    state.facts_eval = state.facts.with_examples(parts)
    state.problems = arithmetic_task(n=p.n_problems, seed=0, splits=("test",))
    state.evals["base"] = evaluate_stored(model, state.problems, state.facts_eval, p, state.evals_dir)
    return {
        "model": {
            "spec": model.spec,
            "fingerprint": model.fingerprint,
            "n_layers": model.n_layers,
            "d_model": model.d_model,
        },
        "known_facts": facts_info,
        **summary(state.evals["base"]),
    }


def _finetune(state: State, parent: str, method: str, steps: int, doses: tuple[int, ...], name: str):
    from interp.finetune import CARD, FinetuneConfig, dose_dir, finetune, read_card

    p = state.profile
    cfg = FinetuneConfig(
        method=method,
        lr=p.lr,
        batch_size=p.batch_size,
        steps=steps,
        doses=doses,
        max_len=SELF_MAX_LEN if method == "sft-self" else MAX_LEN,
        n_train=p.n_train,
        rehearse_facts=p.rehearse_facts,
        self_samples=p.self_samples,
        seed=0,
    )
    out = state.out / "checkpoints" / name
    had = [(dose_dir(out, s) / CARD).is_file() for s in cfg.all_doses]
    dirs = finetune(parent, cfg, out, progress=state.progress, facts=state.facts)
    cards = [read_card(d) or {} for d in dirs]
    info = {
        "method": method,
        "config": cfg.to_dict(),
        "reused": all(had),
        "checkpoints": {
            str(c.get("step")): {
                "dir": str(d),
                "fingerprint": c.get("fingerprint"),
                "loss": c.get("loss"),
                "seconds": c.get("seconds"),
                "relative_change": (c.get("relative_change") or {}).get("overall"),
            }
            for d, c in zip(dirs, cards, strict=True)
        },
    }
    return dirs, info


def stage_parent(state: State) -> dict[str, Any]:
    """The base, or a verbalising parent made by ``sft-verbalise`` when the base rarely self-checks."""
    rate = state.evals["base"]["self_checks_per_response"]
    if rate >= PARENT_THRESHOLD:
        state.parent = state.spec
        state.evals["parent"] = state.evals["base"]
        return {
            "made": False,
            "why": f"base says {rate:.2f} self-check phrases per response "
            f"(>= {PARENT_THRESHOLD}): the parent is the base",
        }
    steps = state.profile.verbalise_steps
    dirs, info = _finetune(state, state.spec, "sft-verbalise", steps, (), "verbalise")
    state.parent = f"hf:{dirs[-1]}"
    model = load(state.parent)
    state.evals["parent"] = evaluate_stored(
        model, state.problems, state.facts_eval, state.profile, state.evals_dir
    )
    return {
        "made": True,
        "why": f"base says {rate:.2f} self-check phrases per response (< {PARENT_THRESHOLD}): a "
        f"verbalising parent was made by sft-verbalise ({steps} steps)",
        "finetune": info,
        **summary(state.evals["parent"]),
    }


def stage_tunes(state: State) -> dict[str, Any]:
    """``sft-answer`` at every dose (and ``sft-self``), each measured and checked for its precondition."""
    p = state.profile
    runs: dict[str, Any] = {}
    doses = p.answer_doses
    dirs, runs["sft-answer"] = _finetune(state, state.parent, "sft-answer", doses[-1], doses[:-1], "answer")
    for d, step in zip(dirs, doses, strict=True):
        state.tunes[f"sft-answer@{step}"] = f"hf:{d}"
    state.strongest = f"sft-answer@{doses[-1]}"
    if p.self_steps:
        try:
            dirs, runs["sft-self"] = _finetune(state, state.parent, "sft-self", p.self_steps, (), "self")
            state.tunes[f"sft-self@{p.self_steps}"] = f"hf:{dirs[-1]}"
        except Exception as exc:  # noqa: BLE001 - e.g. no correct own solution: reported, the suite goes on
            runs["sft-self"] = {"error": f"{type(exc).__name__}: {exc}"}
    tunes: dict[str, Any] = {}
    parent = state.evals["parent"]
    for label, spec in state.tunes.items():
        state.evals[label] = evaluate_stored(load(spec), state.problems, state.facts_eval, p, state.evals_dir)
        ev = state.evals[label]
        gain = paired(ev["correct"], parent["correct"], p.resamples)
        raised = gain["excludes_0"] and gain["estimate"] > 0
        tunes[label] = {**summary(ev), "accuracy_gain": gain, "raised_accuracy": raised}
    state.focus, why = choose_focus(tunes, state.strongest)
    return {
        "runs": runs,
        "tunes": tunes,
        "strongest": state.strongest,
        "focus": state.focus,
        "focus_why": why,
        "any_raised": any(t["raised_accuracy"] for t in tunes.values()),
        "strongest_raised": tunes[state.strongest]["raised_accuracy"],
    }


def choose_focus(tunes: dict[str, Any], strongest: str) -> tuple[str, str]:
    """The tune that the latent-reasoning, feature and steering findings study, and why.

    The tune whose accuracy gain over the parent is largest among those that raised it (interval
    above 0); when none did, the self-distilled tune (it answers in the parent's own format), else
    the strongest ``sft-answer`` dose. The findings then report "not testable" for a tune that
    did not raise accuracy; the choice only decides which numbers they show beside it.
    """
    raised = {t: row["accuracy_gain"]["estimate"] for t, row in tunes.items() if row["raised_accuracy"]}
    if raised:
        best = max(raised, key=lambda t: raised[t])
        return best, f"{best} raised accuracy over the parent the most ({raised[best]:+.3f})"
    own = [t for t in tunes if t.startswith("sft-self@")]
    if own:
        return own[-1], f"no tune raised accuracy; {own[-1]} keeps the parent's response format"
    return strongest, f"no tune raised accuracy; {strongest} is the strongest sft-answer dose"
