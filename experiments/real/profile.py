"""How much the real-model suite measures, per profile, and the self-check phrases it counts."""

from dataclasses import asdict, dataclass
from typing import Any

SELF_CHECK = ("wait", "check", "verify", "hmm", "actually")
"""Self-check phrases, counted case-insensitively as whole words (:func:`probes.markers.count_markers`).
"let me check", "double-check" and "Wait, let me check" count once each, through ``check``."""

PARENT_THRESHOLD = 0.2
"""Below this many self-check phrases per base response, a verbalising parent is made first."""


def require_positive_ints(obj: object, names: "tuple[str, ...] | list[str]") -> None:
    """Refuse any of ``obj``'s fields ``names`` that is not an integer >= 1, naming it.

    Raises:
        ValueError: ``name=value; expected an integer >= 1``.
    """
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r}; expected an integer >= 1")


def sizes_of(table: "dict[str, Any]", profile: str) -> Any:
    """``table[profile]``, or a ValueError naming the known profiles."""
    if profile not in table:
        raise ValueError(f"profile={profile!r}; expected one of {sorted(table)}")
    return table[profile]


@dataclass(frozen=True)
class RealProfile:
    """Sizes of one run of the real-model suite.

    Args:
        name: the profile's name.
        n_facts: public-knowledge questions offered to the known-facts filter.
        n_eval_facts: most known facts per split (rehearsed, held-out) measured per checkpoint.
        n_scorer_facts: held-out facts in the localisation scorer (mean log-probability).
        n_problems: arithmetic test problems answered greedily per checkpoint.
        max_new_tokens: response budget.
        n_train: arithmetic training problems of every fine-tune.
        batch_size: fine-tuning batch size.
        verbalise_steps: steps of the verbalising parent (``sft-verbalise``).
        answer_doses: steps of the ``sft-answer`` checkpoints (the last is the strongest dose).
        self_steps: steps of ``sft-self`` (0: no self-distillation).
        self_samples: samples per training problem for ``sft-self``.
        lr: fine-tuning learning rate.
        rehearse_facts: share of each fine-tuning batch that rehearses known facts.
        passk_problems: problems for pass@k.
        passk_samples: samples per problem (n); k runs 1..n.
        temperature: sampling temperature of pass@k.
        top_p: nucleus of pass@k sampling.
        steer_scales: multiples of the difference-of-means vector added to the tune.
        steer_problems: problems answered under each steering scale.
        resamples: bootstrap resamples per interval.
    """

    name: str
    n_facts: int
    n_eval_facts: int
    n_scorer_facts: int
    n_problems: int
    max_new_tokens: int
    n_train: int
    batch_size: int
    verbalise_steps: int
    answer_doses: tuple[int, ...]
    self_steps: int
    self_samples: int
    lr: float
    rehearse_facts: float
    passk_problems: int
    passk_samples: int
    temperature: float
    top_p: float
    steer_scales: tuple[float, ...]
    steer_problems: int
    resamples: int = 2000

    def __post_init__(self) -> None:
        require_positive_ints(
            self,
            (
                "n_facts",
                "n_eval_facts",
                "n_scorer_facts",
                "n_problems",
                "max_new_tokens",
                "n_train",
                "batch_size",
                "verbalise_steps",
                "passk_problems",
                "passk_samples",
                "steer_problems",
                "self_samples",
            ),
        )
        if (
            not self.answer_doses
            or any(d < 1 for d in self.answer_doses)
            or list(self.answer_doses) != sorted(set(self.answer_doses))
        ):
            raise ValueError(f"answer_doses={self.answer_doses!r}; expected increasing step counts >= 1")
        if self.self_steps < 0:
            raise ValueError(f"self_steps={self.self_steps!r}; expected >= 0")
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError(
                f"temperature={self.temperature!r}, top_p={self.top_p!r}; expected > 0 and (0, 1]"
            )
        if not self.steer_scales or any(s <= 0 for s in self.steer_scales):
            raise ValueError(f"steer_scales={self.steer_scales!r}; expected positive multiples")

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, RealProfile] = {
    # plumbing only: a tiny random model built by the test, seconds
    "tiny": RealProfile(
        "tiny",
        n_facts=12,
        n_eval_facts=6,
        n_scorer_facts=4,
        n_problems=4,
        max_new_tokens=12,
        n_train=8,
        batch_size=4,
        verbalise_steps=2,
        answer_doses=(1, 2),
        self_steps=1,
        self_samples=1,
        lr=3e-3,
        rehearse_facts=0.25,
        passk_problems=3,
        passk_samples=2,
        temperature=1.0,
        top_p=0.95,
        steer_scales=(1.0, 4.0),
        steer_problems=3,
        resamples=200,
    ),
    # SmolLM2-135M on 2 CPU cores: within 25 minutes
    "quick": RealProfile(
        "quick",
        n_facts=100,
        n_eval_facts=32,
        n_scorer_facts=16,
        n_problems=40,
        max_new_tokens=96,
        n_train=96,
        batch_size=8,
        verbalise_steps=16,
        answer_doses=(8, 24, 48),
        self_steps=16,
        self_samples=2,
        lr=1e-4,
        rehearse_facts=0.25,
        passk_problems=10,
        passk_samples=5,
        temperature=0.8,
        top_p=0.95,
        steer_scales=(0.25, 0.5, 1.0, 2.0),
        steer_problems=12,
    ),
    # more of everything, for a longer run or a GPU
    "full": RealProfile(
        "full",
        n_facts=400,
        n_eval_facts=80,
        n_scorer_facts=40,
        n_problems=100,
        max_new_tokens=160,
        n_train=512,
        batch_size=16,
        verbalise_steps=100,
        answer_doses=(25, 50, 100),
        self_steps=50,
        self_samples=4,
        lr=1e-4,
        rehearse_facts=0.25,
        passk_problems=40,
        passk_samples=16,
        temperature=0.8,
        top_p=0.95,
        steer_scales=(0.25, 0.5, 1.0, 2.0, 4.0),
        steer_problems=40,
    ),
}
