"""The zoo's models and the three build profiles (``tiny`` for tests, ``quick`` for 2 CPU cores,
``full`` for a GPU or a long run)."""

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from interp.organism.evaluate import EvalConfig, Format
from interp.organism.rl import RLConfig
from interp.organism.traces import DataRecipe
from interp.organism.train import ModelShape, TrainConfig
from interp.organism.world import WorldConfig

Profile = Literal["tiny", "quick", "full"]
PROFILES: tuple[str, ...] = ("tiny", "quick", "full")
MODEL_NAMES: tuple[str, ...] = (
    "base",
    "sft-answer",
    "sft-clean",
    "rl-answer",
    "rl-fork",
    "swapped",
    "small-base",
    "small-tuned",
    "backward",
)

BASE_DATA = DataRecipe(
    mix={"fact": 0.15, "cot": 0.65, "answer": 0.1, "walk": 0.1}, check_rate=0.4, mistake_rate=0.3
)
ANSWER_DATA = DataRecipe(mix={"answer": 1.0}, check_rate=0.0, mistake_rate=0.0)
CLEAN_DATA = DataRecipe(mix={"cot": 1.0}, check_rate=0.0, mistake_rate=0.0)
SWAPPED_DATA = DataRecipe(mix={"fact": 0.2, "swapped": 0.7, "answer": 0.1}, check_rate=0.4, mistake_rate=0.3)
BACKWARD_DATA = DataRecipe(
    mix={"fact": 0.1, "cot": 0.4, "walk": 0.05, "backward_question": 0.15, "backward": 0.3},
    check_rate=0.4,
    mistake_rate=0.3,
)


@dataclass(frozen=True)
class ModelSpec:
    """How one model of the zoo is made: from scratch or from ``parent``, by LM training or RL."""

    name: str
    shape: ModelShape
    fmt: Format
    parent: str | None = None
    data: DataRecipe | None = None
    train: TrainConfig | None = None
    rl: RLConfig | None = None
    note: str = ""

    @property
    def steps(self) -> int:
        return self.rl.steps if self.rl is not None else (self.train.steps if self.train else 0)

    def recipe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": asdict(self.shape),
            "format": self.fmt,
            "parent": self.parent,
            "data": self.data.to_dict() if self.data else None,
            "train": self.train.to_dict() if self.train else None,
            "rl": self.rl.to_dict() if self.rl else None,
            "note": self.note,
        }


@dataclass(frozen=True)
class ProfileConfig:
    """Sizes and budgets of a build profile."""

    name: str
    world: WorldConfig
    big: ModelShape
    small: ModelShape
    base: TrainConfig
    small_base: TrainConfig
    swapped: TrainConfig
    sft: TrainConfig
    backward: TrainConfig
    rl: RLConfig
    eval: EvalConfig = field(default_factory=EvalConfig)

    def specs(self) -> list[ModelSpec]:
        """Every model of the zoo, parents before children."""
        fork = RLConfig(**{**asdict(self.rl), "top_entropy_quantile": 0.8})
        return [
            ModelSpec(
                "base",
                self.big,
                "cot",
                None,
                BASE_DATA,
                self.base,
                note="facts + verbalized traces + some answer-only examples",
            ),
            ModelSpec(
                "sft-answer",
                self.big,
                "answer",
                "base",
                ANSWER_DATA,
                self.sft,
                note="answer-only SFT of base",
            ),
            ModelSpec(
                "sft-clean",
                self.big,
                "cot",
                "base",
                CLEAN_DATA,
                self.sft,
                note="SFT of base on traces with every marker and mistake stripped",
            ),
            ModelSpec(
                "rl-answer",
                self.big,
                "cot",
                "base",
                rl=self.rl,
                note="policy gradient, group baseline, reward = final answer correct",
            ),
            ModelSpec(
                "rl-fork",
                self.big,
                "cot",
                "base",
                rl=fork,
                note="as rl-answer, updates only on the top-20% entropy tokens",
            ),
            ModelSpec(
                "swapped",
                self.big,
                "cot",
                None,
                SWAPPED_DATA,
                self.swapped,
                note="like base, but each trace comes from an unrelated problem",
            ),
            ModelSpec(
                "small-base",
                self.small,
                "cot",
                None,
                BASE_DATA,
                self.small_base,
                note="smaller model, base recipe (proxy-tuning anti-expert)",
            ),
            ModelSpec(
                "small-tuned",
                self.small,
                "answer",
                "small-base",
                ANSWER_DATA,
                self.sft,
                note="small-base after the sft-answer recipe (proxy-tuning expert)",
            ),
            ModelSpec(
                "backward",
                self.big,
                "cot",
                "base",
                BACKWARD_DATA,
                self.backward,
                note="base trained further with backward question and backward reasoning",
            ),
        ]


def profile_config(profile: str) -> ProfileConfig:
    """The settings of ``tiny``, ``quick`` or ``full``.

    Raises:
        ValueError: an unknown profile (the message lists the valid ones).
    """
    if profile == "tiny":
        return ProfileConfig(
            name="tiny",
            world=WorldConfig(),
            big=ModelShape(2, 32, 2, 64, 128),
            small=ModelShape(1, 16, 2, 32, 128),
            base=TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup=5),
            small_base=TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup=5),
            swapped=TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup=5),
            sft=TrainConfig(steps=5, batch_size=16, lr=1e-3, warmup=1),
            backward=TrainConfig(steps=5, batch_size=16, lr=1e-3, warmup=1),
            rl=RLConfig(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=32),
            eval=EvalConfig(max_problems=6, max_new_tokens=40, samples=1),
        )
    if profile == "quick":
        return ProfileConfig(
            name="quick",
            world=WorldConfig(),
            big=ModelShape(3, 128, 4, 512, 128),
            small=ModelShape(2, 64, 4, 256, 128),
            base=TrainConfig(steps=1200, batch_size=64, lr=2e-3, warmup=50),
            small_base=TrainConfig(steps=1000, batch_size=64, lr=3e-3, warmup=50),
            swapped=TrainConfig(steps=800, batch_size=64, lr=2e-3, warmup=50),
            sft=TrainConfig(steps=150, batch_size=64, lr=3e-4, warmup=10),
            backward=TrainConfig(steps=250, batch_size=64, lr=3e-4, warmup=10),
            rl=RLConfig(steps=40, prompts_per_step=8, group_size=8, lr=3e-5),
            eval=EvalConfig(max_problems=None, max_new_tokens=120),
        )
    if profile == "full":
        return ProfileConfig(
            name="full",
            world=WorldConfig(),
            big=ModelShape(4, 256, 8, 1024, 128),
            small=ModelShape(2, 128, 4, 512, 128),
            base=TrainConfig(steps=8000, batch_size=128, lr=5e-4, warmup=200),
            small_base=TrainConfig(steps=6000, batch_size=128, lr=1e-3, warmup=200),
            swapped=TrainConfig(steps=8000, batch_size=128, lr=5e-4, warmup=200),
            sft=TrainConfig(steps=800, batch_size=128, lr=1e-4, warmup=50),
            backward=TrainConfig(steps=1500, batch_size=128, lr=1e-4, warmup=50),
            rl=RLConfig(steps=300, prompts_per_step=16, group_size=8, lr=1e-5),
            eval=EvalConfig(max_problems=None, max_new_tokens=120),
        )
    raise ValueError(f"profile={profile!r}; expected one of {PROFILES}")
