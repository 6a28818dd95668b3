"""The zoo's models and the three build profiles (``tiny`` for tests, ``quick`` for 2 CPU cores,
``full`` for a GPU or a long run).

Every fine-tune is also saved at its *doses*: snapshots of the same run after fewer steps
(``sft-answer@50``, ...). Dose 0 is the parent itself and is never saved; the final model is the
last dose. The controls are matched: ``swapped``, ``corrupt`` and ``no-trace`` are trained from
scratch with ``base``'s exact :class:`TrainConfig` and ``base``'s mix with its ``cot`` weight
moved to another kind; ``forward-only`` is ``backward`` minus the backward kinds; ``rl-fork``
and ``rl-bottom`` run exactly as many steps as ``rl-answer`` did.
"""

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from interp.errors import InterpError
from interp.organism.distill import DistillConfig
from interp.organism.evaluate import EvalConfig, Format
from interp.organism.rl import RLConfig
from interp.organism.traces import DataRecipe
from interp.organism.train import ModelShape, TrainConfig
from interp.organism.world import WorldConfig

Profile = Literal["tiny", "quick", "full"]
PROFILES: tuple[str, ...] = ("tiny", "quick", "full")
DOSE_SEP = "@"


class ZooConfigError(InterpError, ValueError):
    """A zoo model or profile setting that cannot be built (a bad dose, a missing recipe)."""


RL_SPLIT = "rl"  # RL draws its problems from a split disjoint from train (World.split)

BASE_MIX: dict[str, float] = {"fact": 0.1, "attr": 0.05, "cot": 0.65, "answer": 0.1, "walk": 0.1}
CHECK_RATE, MISTAKE_RATE = 0.8, 0.3
BACKWARD_MIX: dict[str, float] = {
    "fact": 0.1,
    "cot": 0.4,
    "walk": 0.05,
    "backward_question": 0.15,
    "backward": 0.3,
}
BACKWARD_KINDS = ("backward_question", "backward")


def moved_mix(mix: dict[str, float], source: str, target: str) -> dict[str, float]:
    """``mix`` with the weight of ``source`` moved onto ``target`` (the total is unchanged).

    Example:
        >>> moved_mix({"fact": 0.25, "cot": 0.5, "answer": 0.25}, "cot", "answer")
        {'fact': 0.25, 'answer': 0.75}
    """
    out = {k: v for k, v in mix.items() if k != source}
    out[target] = out.get(target, 0.0) + mix[source]
    return out


def without_kinds(mix: dict[str, float], kinds: tuple[str, ...]) -> dict[str, float]:
    """``mix`` minus ``kinds``, renormalised to the original total.

    Example:
        >>> without_kinds({"cot": 0.5, "backward": 0.5}, ("backward",))
        {'cot': 1.0}
    """
    kept = {k: v for k, v in mix.items() if k not in kinds}
    scale = sum(mix.values()) / sum(kept.values())
    return {k: v * scale for k, v in kept.items()}


def _recipe(mix: dict[str, float], checks: bool = True) -> DataRecipe:
    return DataRecipe(
        mix=mix, check_rate=CHECK_RATE if checks else 0.0, mistake_rate=MISTAKE_RATE if checks else 0.0
    )


BASE_DATA = _recipe(BASE_MIX)
ANSWER_DATA = _recipe({"answer": 1.0}, checks=False)
CLEAN_DATA = _recipe({"cot": 1.0}, checks=False)
SWAPPED_DATA = _recipe(moved_mix(BASE_MIX, "cot", "swapped"))
CORRUPT_DATA = _recipe(moved_mix(BASE_MIX, "cot", "corrupt"))
NO_TRACE_DATA = _recipe(moved_mix(BASE_MIX, "cot", "answer"))
BACKWARD_DATA = _recipe(BACKWARD_MIX)
FORWARD_ONLY_DATA = _recipe(without_kinds(BACKWARD_MIX, BACKWARD_KINDS))

MODEL_NAMES: tuple[str, ...] = (
    "base",
    "sft-answer",
    "sft-clean",
    "sft-self",
    "rl-answer",
    "rl-fork",
    "rl-bottom",
    "swapped",
    "corrupt",
    "no-trace",
    "backward",
    "forward-only",
    "small-base",
    "small-tuned",
)


@dataclass(frozen=True)
class ModelSpec:
    """How one model of the zoo is made: from scratch or from ``parent``, by LM training or RL.

    Args:
        name: the model's name (no ``@``: that separates a dose).
        shape: its architecture.
        fmt: its own answer format.
        parent: the model it is fine-tuned from (``None``: trained from scratch).
        data: what it is trained on (LM training).
        train: optimizer settings (LM training).
        rl: RL settings (``rl.steps`` is the most steps when ``budget_from`` is set).
        distill: train on the parent's own correct samples instead of ``data``.
        budget_from: run exactly as many RL steps as that model's run did.
        doses: step counts, each in ``1..steps-1``, increasing, at which the run is also saved
            (as ``NAME@STEPS``); dose 0 is the parent and is never saved.
        note: one line on what the model is for.
    """

    name: str
    shape: ModelShape
    fmt: Format
    parent: str | None = None
    data: DataRecipe | None = None
    train: TrainConfig | None = None
    rl: RLConfig | None = None
    note: str = ""
    distill: DistillConfig | None = None
    budget_from: str | None = None
    doses: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or DOSE_SEP in self.name or "/" in self.name:
            raise ZooConfigError(f"name={self.name!r}; expected a plain name without '@' or '/'")
        lm = self.train is not None and (self.data is not None or self.distill is not None)
        if (self.rl is not None) == lm:
            raise ZooConfigError(
                f"model {self.name!r} needs exactly one recipe: rl=, or train= with data= or distill="
            )
        if self.distill is not None and self.parent is None:
            raise ZooConfigError(f"model {self.name!r}: distill= needs a parent to sample from")
        if self.budget_from is not None and self.rl is None:
            raise ZooConfigError(f"model {self.name!r}: budget_from= is for RL models only")
        d = self.doses
        bad = [x for x in d if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x < self.steps]
        if bad or list(d) != sorted(set(d)):
            raise ZooConfigError(
                f"model {self.name!r}: doses={d!r}; expected increasing step counts in "
                f"1..{self.steps - 1} (dose 0 is the parent, the final model is step {self.steps})"
            )

    @property
    def steps(self) -> int:
        """Training steps (for RL, the most steps: a plateau or ``budget_from`` may run fewer)."""
        return self.rl.steps if self.rl is not None else (self.train.steps if self.train else 0)

    def recipe(self) -> dict[str, Any]:
        """What makes the run (the doses are not part of it: each is a snapshot of the run)."""
        return {
            "name": self.name,
            "shape": asdict(self.shape),
            "format": self.fmt,
            "parent": self.parent,
            "data": self.data.to_dict() if self.data else None,
            "train": self.train.to_dict() if self.train else None,
            "rl": self.rl.to_dict() if self.rl else None,
            "distill": asdict(self.distill) if self.distill else None,
            "budget_from": self.budget_from,
            "note": self.note,
        }


@dataclass(frozen=True)
class ProfileConfig:
    """Sizes and budgets of a build profile.

    ``base`` is the TrainConfig of ``base`` and of every matched control trained from scratch;
    ``rl`` is ``rl-answer``'s run (its ``steps`` the most, it stops on a plateau); ``eval`` is
    the full measurement of every final model and ``dose_eval`` the lighter one of each dose.
    ``world_seeds`` x ``model_seeds`` are the seed combinations ``interp reproduce`` builds a
    zoo for (:meth:`seed_combinations`); the first one is the run whose claims the report gives.
    """

    name: str
    world: WorldConfig
    big: ModelShape
    small: ModelShape
    base: TrainConfig
    small_base: TrainConfig
    sft: TrainConfig
    backward: TrainConfig
    rl: RLConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    dose_eval: EvalConfig = field(default_factory=lambda: EvalConfig(samples=0, marker_ablation=False))
    distill: DistillConfig = field(default_factory=DistillConfig)
    sft_doses: tuple[int, ...] = ()
    rl_doses: tuple[int, ...] = ()
    backward_doses: tuple[int, ...] = ()
    world_seeds: tuple[int, ...] = (0,)
    model_seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in ("world_seeds", "model_seeds"):
            seeds = getattr(self, name)
            ok = isinstance(seeds, tuple) and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds
            )
            if not ok or not seeds or len(set(seeds)) != len(seeds):
                raise ZooConfigError(
                    f"profile {self.name!r}: {name}={seeds!r}; "
                    "expected a non-empty tuple of distinct ints >= 0"
                )

    def seed_combinations(self) -> list[tuple[int, int]]:
        """Every ``(world_seed, model_seed)`` pair, world seeds outermost; the first is the main run.

        Example:
            >>> profile_config("full").seed_combinations()[:3]
            [(0, 0), (0, 1), (1, 0)]
        """
        return [(w, m) for w in self.world_seeds for m in self.model_seeds]

    def specs(self) -> list[ModelSpec]:
        """Every model of the zoo, parents (and ``budget_from`` models) before children."""
        big, small, sft, sd = self.big, self.small, self.sft, self.sft_doses
        rl_answer = replace(self.rl, split=RL_SPLIT, stop_on_plateau=True)
        arm = {"split": RL_SPLIT, "stop_on_plateau": False, "top_entropy_quantile": 0.8}
        fork = replace(self.rl, **arm, entropy_side="top")
        bottom = replace(self.rl, **arm, entropy_side="bottom")
        rd = self.rl_doses
        specs = [
            ModelSpec(
                "base",
                big,
                "cot",
                None,
                BASE_DATA,
                self.base,
                note="facts, attributes, verbalised traces, some answer-only examples",
            ),
            ModelSpec(
                "sft-answer",
                big,
                "answer",
                "base",
                ANSWER_DATA,
                sft,
                doses=sd,
                note="answer-only SFT of base",
            ),
            ModelSpec(
                "sft-clean",
                big,
                "cot",
                "base",
                CLEAN_DATA,
                sft,
                doses=sd,
                note="SFT of base on traces with every marker and mistake stripped",
            ),
            ModelSpec(
                "sft-self",
                big,
                "cot",
                "base",
                None,
                sft,
                distill=self.distill,
                doses=sd,
                note="SFT of base on its own sampled responses, the correct ones only",
            ),
            ModelSpec(
                "rl-answer",
                big,
                "cot",
                "base",
                rl=rl_answer,
                doses=rd,
                note=f"policy gradient on the {RL_SPLIT!r} split until the reward plateaus",
            ),
            ModelSpec(
                "rl-fork",
                big,
                "cot",
                "base",
                rl=fork,
                budget_from="rl-answer",
                doses=rd,
                note="as rl-answer for its steps, updates on the top-20% entropy tokens only",
            ),
            ModelSpec(
                "rl-bottom",
                big,
                "cot",
                "base",
                rl=bottom,
                budget_from="rl-answer",
                doses=rd,
                note="as rl-answer for its steps, updates on the bottom-80% entropy tokens",
            ),
            ModelSpec(
                "swapped",
                big,
                "cot",
                None,
                SWAPPED_DATA,
                self.base,
                note="base's recipe, each trace from an unrelated problem",
            ),
        ]
        specs += [
            ModelSpec(
                "corrupt",
                big,
                "cot",
                None,
                CORRUPT_DATA,
                self.base,
                note="base's recipe, traces with corrupted intermediate nodes",
            ),
            ModelSpec(
                "no-trace",
                big,
                "answer",  # it never sees a trace prompt: its own format is answer-only
                None,
                NO_TRACE_DATA,
                self.base,
                note="base's recipe with every trace replaced by an answer-only example",
            ),
            ModelSpec(
                "backward",
                big,
                "cot",
                "base",
                BACKWARD_DATA,
                self.backward,
                doses=self.backward_doses,
                note="base trained further with backward questions and backward reasoning",
            ),
            ModelSpec(
                "forward-only",
                big,
                "cot",
                "base",
                FORWARD_ONLY_DATA,
                self.backward,
                doses=self.backward_doses,
                note="backward's run minus the backward kinds (its control)",
            ),
            ModelSpec(
                "small-base",
                small,
                "cot",
                None,
                BASE_DATA,
                self.small_base,
                note="smaller model, base recipe (proxy-tuning anti-expert)",
            ),
            ModelSpec(
                "small-tuned",
                small,
                "answer",
                "small-base",
                ANSWER_DATA,
                sft,
                doses=sd,
                note="small-base after the sft-answer recipe (proxy-tuning expert)",
            ),
        ]
        return specs


def profile_config(profile: str) -> ProfileConfig:
    """The settings of ``tiny``, ``quick`` or ``full``.

    Raises:
        ValueError: an unknown profile (the message lists the valid ones).
    """
    if profile == "tiny":
        light = EvalConfig(max_problems=4, max_new_tokens=40, samples=0, marker_ablation=False)
        return ProfileConfig(
            name="tiny",
            world=WorldConfig(),
            big=ModelShape(2, 32, 2, 64, 128),
            small=ModelShape(1, 16, 2, 32, 128),
            # enough for base to solve a few train problems when sampled, which sft-self needs
            # (30 steps solved none; 200 at this rate keeps 13-23 of 1592 samples, 3 seeds)
            base=TrainConfig(steps=200, batch_size=16, lr=1e-2, warmup=10),
            small_base=TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup=5),
            sft=TrainConfig(steps=5, batch_size=16, lr=1e-3, warmup=1),
            backward=TrainConfig(steps=5, batch_size=16, lr=1e-3, warmup=1),
            # tiny's base solves nothing: the flat reward stops rl-answer at window + patience
            rl=RLConfig(
                steps=6,
                prompts_per_step=2,
                group_size=2,
                max_new_tokens=32,
                window=2,
                patience=1,
                min_steps=2,
            ),
            eval=EvalConfig(max_problems=6, max_new_tokens=40, samples=1),
            dose_eval=light,
            distill=DistillConfig(samples_per_problem=8, max_new_tokens=40),
            sft_doses=(2, 4),
            rl_doses=(1, 2),
            backward_doses=(3,),
        )
    if profile == "quick":
        return ProfileConfig(
            name="quick",
            # 64 nodes: test_id ~320, test_ood ~1000 (300 measured), test_comp ~160, test_start
            # ~120 problems; train ~650, so memorisation cannot saturate
            world=WorldConfig(
                n_nodes=64, test_fraction=0.28, rl_fraction=0.15, comp_goal_fraction=0.15, start_fraction=0.12
            ),
            big=ModelShape(3, 128, 4, 512, 160),
            small=ModelShape(2, 64, 4, 256, 160),
            # 1000 steps: a base with headroom, calibrated once on world seed 0 (greedy test_id
            # solve rate: 800 steps 0.54, 1000 steps 0.63, 1200 steps 0.79; target 0.6-0.75)
            base=TrainConfig(steps=1000, batch_size=64, lr=2e-3, warmup=50),
            small_base=TrainConfig(steps=600, batch_size=64, lr=3e-3, warmup=50),
            sft=TrainConfig(steps=300, batch_size=64, lr=3e-4, warmup=10),
            backward=TrainConfig(steps=200, batch_size=64, lr=3e-4, warmup=10),
            # 8 prompts x 8 samples, up to 150 steps: on a 1000-step base (world seed 0) rl-split
            # reward rose 0.60 -> 0.83 over 150 steps while held-out greedy answer accuracy moved
            # +0.007 [-0.05, 0.06] (sampled +0.03 [-0.01, 0.06]); 4 x 8 with window 10 stopped
            # on noise at step 25 with the reward falling
            rl=RLConfig(
                steps=150, prompts_per_step=8, group_size=8, lr=1e-4, max_new_tokens=140,
                window=20, patience=30, min_steps=40,
            ),
            eval=EvalConfig(max_problems=300, max_new_tokens=140, samples=2),
            dose_eval=EvalConfig(
                max_problems=100, max_new_tokens=140, samples=0, splits=("test_id",), marker_ablation=False
            ),
            distill=DistillConfig(samples_per_problem=4, max_problems=300, max_new_tokens=140),
            sft_doses=(30, 100),
            rl_doses=(30, 80),
            backward_doses=(50,),
        )
    if profile == "full":
        return ProfileConfig(
            name="full",
            world=WorldConfig(),
            big=ModelShape(4, 256, 8, 1024, 128),
            small=ModelShape(2, 128, 4, 512, 128),
            base=TrainConfig(steps=8000, batch_size=128, lr=5e-4, warmup=200),
            small_base=TrainConfig(steps=6000, batch_size=128, lr=1e-3, warmup=200),
            sft=TrainConfig(steps=800, batch_size=128, lr=1e-4, warmup=50),
            backward=TrainConfig(steps=1500, batch_size=128, lr=1e-4, warmup=50),
            rl=RLConfig(steps=1000, prompts_per_step=16, group_size=8, lr=1e-5, window=50, patience=100),
            eval=EvalConfig(max_problems=None, max_new_tokens=120),
            dose_eval=EvalConfig(max_problems=300, max_new_tokens=120, samples=0, marker_ablation=False),
            distill=DistillConfig(samples_per_problem=8),
            sft_doses=(50, 150, 500),
            rl_doses=(50, 150, 500),
            backward_doses=(50, 150, 500),
            # issue 12: the full profile reports the spread over 3 worlds x 2 model seeds
            world_seeds=(0, 1, 2),
            model_seeds=(0, 1),
        )
    raise ValueError(f"profile={profile!r}; expected one of {PROFILES}")
