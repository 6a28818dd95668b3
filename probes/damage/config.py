"""Settings, inputs and vocabulary of damage localisation: sites, evidence, config, probe task."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from interp.models import Model
from probes.linear import ProbeConfig

Scorer = Callable[[Model], float]
COMPONENTS = ("attn", "mlp", "resid_post")
HOOKS = {
    "attn": "blocks.{}.hook_attn_out",
    "mlp": "blocks.{}.hook_mlp_out",
    "resid_post": "blocks.{}.hook_resid_post",
}
EVIDENCE = ("restoration", "weight_change", "cka_drop", "probe_drop")


@dataclass(frozen=True)
class DamageConfig:
    """Settings of :func:`localise_damage`.

    Args:
        components: which sites are patched: ``attn`` (``hook_attn_out``), ``mlp``
            (``hook_mlp_out``), ``resid_post`` (``hook_resid_post``).
        directions: ``both`` (restoration and damage) or ``restore`` (restoration only: half the
            scorer calls).
        batch_size: rows per forward pass when recording activations for probes and CKA.
        probe: settings of the base model's probes (fitted on the probe task's training part).
        probe_test_fraction: share of the probe task held out, where both models are measured.
        threshold: layers whose evidence reaches ``threshold`` times the largest are named.
        min_gap: a score gap ``base - tuned`` at or below this is no damage to localise.
        seed: the probe task's train/test split.
    """

    components: tuple[str, ...] = COMPONENTS
    directions: Literal["both", "restore"] = "both"
    batch_size: int = 64
    probe: ProbeConfig = ProbeConfig(control=False)
    probe_test_fraction: float = 0.25
    threshold: float = 0.5
    min_gap: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [c for c in self.components if c not in COMPONENTS]
        if bad or not self.components:
            raise ValueError(f"components={self.components!r}; expected a non-empty subset of {COMPONENTS}")
        if self.directions not in ("both", "restore"):
            raise ValueError(f"directions={self.directions!r}; expected 'both' or 'restore'")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected >= 1")
        if not 0 < self.probe_test_fraction < 1:
            raise ValueError(f"probe_test_fraction={self.probe_test_fraction!r}; expected in (0, 1)")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold={self.threshold!r}; expected in (0, 1]")
        if self.min_gap < 0:
            raise ValueError(f"min_gap={self.min_gap!r}; expected >= 0")


@dataclass(frozen=True)
class ProbeTask:
    """Inputs and labels for probe retention: one labelled position per token row.

    Args:
        name: what the label is, for the report.
        tokens: token ids of each row.
        positions: the labelled position of each row (negative counts from the end).
        labels: class ``0..n_class-1`` of each row (at least two classes).
    """

    name: str
    tokens: tuple[tuple[int, ...], ...]
    positions: tuple[int, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.tokens) == len(self.positions) == len(self.labels) or len(self.tokens) < 4:
            raise ValueError(
                f"probe task {self.name!r}: {len(self.tokens)} rows, {len(self.positions)} positions, "
                f"{len(self.labels)} labels; expected the same number, at least 4"
            )
        for i, (row, p) in enumerate(zip(self.tokens, self.positions, strict=True)):
            if not -len(row) <= p < len(row):
                raise ValueError(
                    f"probe task {self.name!r}: position {p} is outside row {i} of length {len(row)}"
                )
        if len(set(self.labels)) < 2 or min(self.labels) < 0:
            raise ValueError(
                f"probe task {self.name!r}: labels must be 0..n_class-1 with two classes or more"
            )
