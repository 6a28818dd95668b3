"""Settings of a cache build."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from interp.cache.format import DTYPES

PositionSpec = Literal["all", "last"] | tuple[int, ...]


@dataclass(frozen=True)
class CacheConfig:
    """What to cache and how.

    Args:
        hooks: hook names or glob patterns (``blocks.*.hook_resid_post``).
        positions: ``"all"`` (every token), ``"last"`` (the last token of each row), or a tuple
            of indices into each row (negative from the end; indices past a row's end are
            skipped for that row).
        dtype: the stored dtype.
        batch_size: rows per forward pass.
        shard_tokens: at most this many kept positions per shard (a single longer row still
            gets a shard of its own); build memory is bounded by one shard.
        max_tokens: stop after this many tokens in all (the last row is cut to fit).
        max_seq_len: cut every row to this many tokens (default: the model's context).
        seed: seeds torch before the build (recorded for provenance).
        early_stop: stop each forward pass once every requested hook has fired.

    Raises:
        ValueError: a value out of range, naming it and what is accepted.
    """

    hooks: str | Sequence[str]
    positions: PositionSpec | list[int] = "all"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = 16
    shard_tokens: int = 65536
    max_tokens: int | None = None
    max_seq_len: int | None = None
    seed: int = 0
    early_stop: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.hooks, str):
            object.__setattr__(self, "hooks", (self.hooks,))
        object.__setattr__(self, "hooks", tuple(self.hooks))
        if not self.hooks:
            raise ValueError("hooks is empty; give at least one hook name or pattern")
        if isinstance(self.positions, list):
            object.__setattr__(self, "positions", tuple(self.positions))
        if isinstance(self.positions, str):
            if self.positions not in ("all", "last"):
                raise ValueError(
                    f"positions {self.positions!r} is not 'all', 'last' or a tuple of indices"
                )
        elif not self.positions or not all(isinstance(p, int) for p in self.positions):
            raise ValueError(f"positions {self.positions!r} must be a non-empty tuple of ints")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {sorted(DTYPES)}")
        for name in ("batch_size", "shard_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_tokens", "max_seq_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value}")

    def kept_positions(self, length: int) -> list[int]:
        """The positions of a row of ``length`` tokens that the cache keeps, ascending."""
        if self.positions == "all":
            return list(range(length))
        if self.positions == "last":
            return [length - 1] if length else []
        kept = {p + length if p < 0 else p for p in self.positions}
        return sorted(p for p in kept if 0 <= p < length)

    def recipe(self) -> dict:
        """The settings that determine the cache's content (recorded in the manifest)."""
        return {
            "positions": self.positions if isinstance(self.positions, str) else list(self.positions),
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "shard_tokens": self.shard_tokens,
            "max_tokens": self.max_tokens,
            "max_seq_len": self.max_seq_len,
            "seed": self.seed,
        }
