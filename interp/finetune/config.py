"""Settings of a fine-tuning run (:class:`FinetuneConfig`) and the error for bad ones."""

import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from interp.errors import InterpError

log = logging.getLogger(__name__)

Method = Literal["sft-answer", "sft-verbalise", "sft-solution", "sft-self"]
METHODS: tuple[str, ...] = get_args(Method)
DTYPES = ("float32", "bfloat16")
# Settings that change nothing in the weights at a given step: a checkpoint written under one
# value is the checkpoint of the other (``threads`` only changes speed under deterministic kernels).
_NOT_IN_RUN_KEY = ("steps", "doses", "threads")


class FinetuneError(InterpError, ValueError):
    """A fine-tuning setting, parent model, data or output folder that cannot be used.

    ``field``, ``value`` and ``expected`` name the setting when the error is about one (the
    command line reports it by its flag).
    """

    def __init__(self, message: str, field: str | None = None, value: Any = None, expected: str = ""):
        super().__init__(message)
        self.field, self.value, self.expected = field, value, expected


def _bad(name: str, value: Any, expected: str) -> FinetuneError:
    return FinetuneError(f"{name}={value!r}; expected {expected}", name, value, expected)


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run of a Hugging Face causal LM on a built-in task.

    Args:
        method: ``sft-answer`` (arithmetic, response ``Answer: N`` only), ``sft-verbalise``
            (solutions with self-checks and caught mistakes: makes a verbalising parent),
            ``sft-solution`` (clean gold step-by-step solutions) or ``sft-self`` (the model's own
            sampled solutions to the training problems, kept when correct).
        lr: AdamW learning rate (constant: a checkpoint at step k does not depend on ``steps``).
        batch_size: sequences per step.
        steps: optimizer steps.
        doses: steps at which a checkpoint is saved (0 saves the parent unchanged); ``steps``
            is always saved too. Default: ``steps`` only.
        max_len: the longest prompt + response in tokens; longer examples are left out.
        seed: seeds the problems, the sampling, the batch order and torch.
        threads: torch CPU threads while training.
        n_train: arithmetic training problems drawn from the task.
        rehearse_facts: share of each batch drawn from the facts task's ``rehearsed`` split (0 to
            1, less than 1); held-out facts are never in the data.
        n_facts: public-knowledge questions offered to the facts filter when rehearsing.
        temperature: sampling temperature of ``sft-self``.
        self_samples: samples per training problem for ``sft-self``.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clip (0 turns it off).
        dtype: the weights' dtype while training (``bfloat16`` is faster and less exact).

    Raises:
        FinetuneError: a value out of range, naming it and what is accepted.

    Example:
        >>> FinetuneConfig(method="sft-answer", steps=50, doses=(10, 25)).all_doses
        (10, 25, 50)
        >>> FinetuneConfig(lr=0.0)
        Traceback (most recent call last):
        ...
        interp.finetune.config.FinetuneError: lr=0.0; expected a number > 0
    """

    method: Method = "sft-answer"
    lr: float = 1e-4
    batch_size: int = 8
    steps: int = 100
    doses: tuple[int, ...] | list[int] = ()
    max_len: int = 128
    seed: int = 0
    threads: int = 2
    n_train: int = 256
    rehearse_facts: float = 0.0
    n_facts: int = 200
    temperature: float = 0.7
    self_samples: int = 4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise _bad("method", self.method, f"one of {', '.join(METHODS)}")
        if self.dtype not in DTYPES:
            raise _bad("dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        for name, low in (
            ("batch_size", 1),
            ("steps", 1),
            ("max_len", 2),
            ("threads", 1),
            ("n_train", 1),
            ("n_facts", 1),
            ("self_samples", 1),
            ("seed", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise _bad(name, v, f"an integer >= {low}")
        for name, ok, expected in (
            ("lr", lambda v: v > 0, "a number > 0"),
            ("weight_decay", lambda v: v >= 0, "a number >= 0"),
            ("grad_clip", lambda v: v >= 0, "a number >= 0 (0 turns clipping off)"),
            ("temperature", lambda v: v > 0, "a number > 0"),
            ("rehearse_facts", lambda v: 0 <= v < 1, "a share in [0, 1)"),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not ok(v):
                raise _bad(name, v, expected)
        doses = tuple(self.doses) if isinstance(self.doses, list | tuple) else self.doses
        if not isinstance(doses, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= self.steps for d in doses
        ):
            raise _bad("doses", self.doses, f"step counts between 0 and steps={self.steps}")
        object.__setattr__(self, "doses", doses)

    @property
    def all_doses(self) -> tuple[int, ...]:
        """The steps saved, ascending: ``doses`` and ``steps``."""
        return tuple(sorted({*self.doses, self.steps}))

    @property
    def rehearsed_per_batch(self) -> int:
        """Sequences of each batch drawn from the rehearsed facts."""
        return round(self.batch_size * self.rehearse_facts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["doses"] = list(self.doses)
        return d

    def run_key(self) -> dict[str, Any]:
        """The settings a checkpoint at a given step depends on (all but steps, doses, threads)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_RUN_KEY}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        """Build from a dict, warning about (and ignoring) keys this version does not know."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.warning("FinetuneConfig: ignoring unknown keys %s", unknown)
        kwargs = {k: v for k, v in data.items() if k in known}
        if "doses" in kwargs and isinstance(kwargs["doses"], list):
            kwargs["doses"] = tuple(kwargs["doses"])
        return cls(**kwargs)
