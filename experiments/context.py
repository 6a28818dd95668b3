"""What every experiment is given: the zoo, the world, an output folder, and a budget per profile."""

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.results import save_figure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How much each experiment measures, per profile (``tiny`` for CI, ``quick`` for 2 cores).

    Args:
        problems: most held-out problems per split an experiment evaluates (``None``: all).
        samples: samples per problem for pass@k and sampled metrics.
        max_new_tokens: generation budget per response.
        sae_steps: SAE training steps.
        cache_rows: most prompts in an activation cache.
    """

    problems: int | None
    samples: int
    max_new_tokens: int
    sae_steps: int
    cache_rows: int | None

    def __post_init__(self) -> None:
        if self.problems is not None and self.problems < 1:
            raise ValueError(f"problems={self.problems!r}; expected None or >= 1")
        for name in ("samples", "max_new_tokens", "sae_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected >= 1")


BUDGETS: dict[str, Budget] = {
    "tiny": Budget(problems=6, samples=2, max_new_tokens=40, sae_steps=20, cache_rows=16),
    # the quick zoo's cards are measured on 300 problems per split with 140 new tokens
    # (interp.organism.profiles); the same budget lets experiments reuse them
    "quick": Budget(problems=300, samples=16, max_new_tokens=140, sae_steps=1500, cache_rows=None),
    "full": Budget(problems=None, samples=64, max_new_tokens=120, sae_steps=6000, cache_rows=None),
}


@dataclass
class Context:
    """One run's shared state: where the zoo and outputs are, the world, models loaded once.

    Args:
        profile: ``tiny``, ``quick`` or ``full``.
        out: the run folder (figures go to ``out/figures``, caches to ``out/caches``).
        zoo: the organism zoo folder.
        progress: show progress bars.
    """

    profile: str
    out: Path
    zoo: Path
    progress: bool = True
    experiment: str = ""
    figures: list[str] = field(default_factory=list)
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _evals: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    _eval_sources: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _world: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in BUDGETS:
            raise ValueError(f"profile={self.profile!r}; expected one of {sorted(BUDGETS)}")
        self.out = Path(self.out)
        self.zoo = Path(self.zoo)

    @property
    def budget(self) -> Budget:
        return BUDGETS[self.profile]

    @property
    def world(self):
        """The organism's world and tokenizer, as ``(world, tok)``."""
        if self._world is None:
            from interp.organism import load_world

            self._world = load_world(self.zoo)
        return self._world

    def problems(self, split: str) -> list[tuple[int, int]]:
        """The first ``budget.problems`` problems of a split (``train``, ``test_id``, ``test_ood``)."""
        return self.world[0].split(split)[: self.budget.problems]

    def model(self, name: str):
        """The zoo model ``name`` as an ``interp`` ``Model`` (loaded once per run)."""
        if name not in self._models:
            from interp.models import load_model

            self._models[name] = load_model(f"organism:{name}")
        return self._models[name]

    def evaluate(self, name: str) -> dict[str, float]:
        """Every card metric of zoo model ``name`` on this profile's problems (once per run).

        When the model's card was measured with exactly these settings on exactly these weights
        (same fingerprint), the card's numbers are used (the report names the card); otherwise
        the model is measured now.
        """
        if name not in self._evals:
            from dataclasses import asdict

            from interp.organism.evaluate import EVAL_METRICS, evaluate_model
            from interp.organism.profiles import profile_config

            world, tok = self.world
            # the measurement the profile's zoo cards were made with: a card of this profile's
            # zoo is read, not re-measured
            cfg = profile_config(self.profile).eval
            card, model = self.card(name), self.model(name)
            same = (
                card.get("recipe", {}).get("eval") == json.loads(json.dumps(asdict(cfg)))
                and card.get("fingerprint") == model.fingerprint
            )
            if same and all(k in card for k in EVAL_METRICS):
                self._evals[name] = {k: float(card[k]) for k in EVAL_METRICS}
                self._eval_sources[name] = {"source": "zoo card", "fingerprint": model.fingerprint}
            else:
                fmt = card.get("format", "cot")
                self._evals[name] = evaluate_model(model.module, tok, world, fmt, cfg)
                self._eval_sources[name] = {
                    "source": "measured in this run",
                    "fingerprint": model.fingerprint,
                }
        self.evaluations[name] = self._eval_sources[name]
        return self._evals[name]

    def card(self, name: str) -> dict[str, Any]:
        from interp.organism import read_card

        return read_card(name, self.zoo)

    def figure(self, fig: Any, name: str) -> str:
        """Save a matplotlib figure as ``figures/<experiment>_<name>.png``; returns its relative path."""
        rel = f"figures/{self.experiment}_{name}.png"
        save_figure(fig, self.out / rel)
        self.figures.append(rel)
        return rel

    def cite_cache(self, key: str, cache: Any, used_for: str) -> dict[str, Any]:
        """Record a cache this experiment read, so the report names its ID next to the figure."""
        info = {
            "id": cache.id,
            "dir": str(Path(cache.root).resolve().relative_to(self.out.resolve()))
            if Path(cache.root).resolve().is_relative_to(self.out.resolve())
            else str(cache.root),
            "model_fingerprint": cache.model_fingerprint,
            "n_rows": cache.n_rows,
            "hooks": cache.hooks,
            "used_for": used_for,
        }
        self.caches[key] = info
        return info

    def for_experiment(self, name: str) -> "Context":
        """A view of this context for one experiment (own figure and cache lists, shared models)."""
        ctx = Context(self.profile, self.out, self.zoo, self.progress, name)
        ctx._models, ctx._evals, ctx._eval_sources = self._models, self._evals, self._eval_sources
        ctx._world = self.world
        return ctx


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t


def write_json(path: Path, obj: Any) -> None:
    from interp.atomic import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, json.loads(json.dumps(obj, default=float)))
