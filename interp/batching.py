"""How prompts are grouped into generation batches: equal lengths (no padding) or left-padded
batches that never cut a row's continuation; and trimming of generated rows at a stop token."""

from collections import defaultdict
from collections.abc import Iterator, Sequence

from interp.errors import GenerationError


def length_batches(prompts: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``prompts`` in batches of equal-length prompts, shortest first.

    Args:
        prompts: token ids of each prompt.
        batch_size: most prompts per batch.

    Returns:
        An iterator over lists of indices into ``prompts``.

    Raises:
        GenerationError: ``batch_size < 1`` or an empty prompt.

    Example:
        >>> list(length_batches([[1, 2], [3], [4, 5], [6, 7]], batch_size=2))
        [[1], [0, 2], [3]]
    """
    if batch_size < 1:
        raise GenerationError(f"batch_size={batch_size!r}; expected >= 1")
    groups: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise GenerationError(f"prompt {i} is empty; every prompt needs at least one token")
        groups[len(p)].append(i)
    for _, idx in sorted(groups.items()):
        for k in range(0, len(idx), batch_size):
            yield idx[k : k + batch_size]


def trim_at_stop(rows: list[list[int]], stop_id: int | None) -> list[list[int]]:
    """Cut each row after its first ``stop_id`` (kept); rows without it are returned whole."""
    if stop_id is None:
        return rows
    return [row[: row.index(stop_id) + 1] if stop_id in row else row for row in rows]


def padded_batches(
    prompts: Sequence[Sequence[int]], batch_size: int, budgets: Sequence[int], n_ctx: int
) -> Iterator[list[int]]:
    """Indices of ``prompts`` in batches of up to ``batch_size``, shortest first, for left padding.

    Prompts of different lengths share a batch (left-padded to its longest), except where the
    padding would cut a row's continuation: a row of a batch ``width`` tokens wide can grow by
    ``n_ctx - width`` tokens only, so a shorter row whose budget exceeds that stays out of
    wider batches. Within the context, every row thus gets exactly what it would alone.

    Args:
        prompts: token ids of each prompt.
        batch_size: most prompts per batch.
        budgets: the most new tokens each prompt may get.
        n_ctx: the model's context.

    Returns:
        An iterator over lists of indices into ``prompts``.

    Raises:
        GenerationError: ``batch_size < 1`` or an empty prompt.

    Example:
        >>> list(padded_batches([[1, 2], [3], [4, 5, 6], [7, 8]], 3, [2, 2, 2, 2], n_ctx=8))
        [[1, 0, 3], [2]]
        >>> list(padded_batches([[1, 2], [3]], 2, [7, 7], n_ctx=8))  # [3] may grow to 8 alone
        [[1], [0]]
    """
    if batch_size < 1:
        raise GenerationError(f"batch_size={batch_size!r}; expected >= 1")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise GenerationError(f"prompt {i} is empty; every prompt needs at least one token")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batch: list[int] = []
    reach = 0  # the widest a batch may grow: min over its rows of n_ctx - budget (own length)
    for i in order:
        width = len(prompts[i])
        own = max(width, n_ctx - budgets[i])  # a row may pad up to n_ctx - budget
        if batch and (len(batch) == batch_size or width > reach):
            yield batch
            batch = []
        reach = own if not batch else min(reach, own)
        batch.append(i)
    if batch:
        yield batch


def row_budgets(
    max_new_tokens: "int | Sequence[int]", prompts: Sequence[Sequence[int]], n_ctx: int
) -> list[int]:
    """Each prompt's budget of new tokens: one number for all or one per prompt, capped by the
    context left after the prompt.

    Raises:
        GenerationError: a budget that is not an integer >= 0, or a list of the wrong length.
    """
    many = not isinstance(max_new_tokens, int)
    wanted = list(max_new_tokens) if many else [max_new_tokens] * len(prompts)
    if many and len(wanted) != len(prompts):
        raise GenerationError(
            f"max_new_tokens has {len(wanted)} entries for {len(prompts)} prompts; expected one per prompt"
        )
    for m in wanted:
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise GenerationError(f"max_new_tokens={m!r}; expected an integer >= 0 (or one per prompt)")
    return [max(0, min(m, n_ctx - len(p))) for m, p in zip(wanted, prompts, strict=True)]
