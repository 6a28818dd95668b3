"""Prompt sources: where the token rows of a cache come from.

A source is a text file (one prompt per line), a JSONL file (a ``text`` or ``prompt`` field per
line), ``organism:SPLIT`` (a split of the built-in world), ``cache:DIR`` (the token rows of an
existing cache, for paired caches), a list of strings, or token ids (a tensor or list of lists).
"""

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.errors import SpecError
from interp.fingerprint import hash_token_rows, sha256_file, sha256_json

JSONL_FIELDS = ("text", "prompt")


@dataclass(frozen=True)
class PromptSource:
    """A restartable stream of prompts plus a host-independent description of them.

    ``texts`` yields strings (tokenized by the model) or ``tokens`` yields id lists; exactly one
    is set.
    """

    description: dict[str, Any]
    texts: Callable[[], Iterator[str]] | None = None
    tokens: Callable[[], Iterator[list[int]]] | None = None


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, split as text mode splits (any newline).

    Raises:
        SpecError: bytes that are not UTF-8, naming the file, line and column.
    """
    lineno = 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SpecError(
                    f"{path}:{lineno + 1}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                    f"{exc.start} of the line); save the file as UTF-8"
                ) from None
            pieces = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            for line in pieces[:-1] if pieces[-1] == "" else pieces:
                lineno += 1
                yield lineno, line


def _text_lines(path: Path) -> Iterator[str]:
    for _, line in _numbered_lines(path):
        if line.strip():
            yield line


def _jsonl_texts(path: Path, field: str | None) -> Iterator[str]:
    for lineno, line in _numbered_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        fields = (field,) if field else JSONL_FIELDS
        key = next((k for k in fields if isinstance(obj, dict) and k in obj), None)
        if key is None or not isinstance(obj[key], str):
            raise SpecError(
                f"{path}:{lineno}: expected an object with a string field "
                f"{' or '.join(repr(k) for k in fields)}"
            )
        yield obj[key]


def resolve_prompts(prompts: Any, field: str | None = None) -> PromptSource:
    """Turn any accepted prompt spec into a :class:`PromptSource`.

    Args:
        prompts: a path (``.txt`` or ``.jsonl``), ``organism:SPLIT``, ``cache:DIR``, a list of
            strings, a list of token-id lists, or an integer tensor ``[batch, pos]``.
        field: the JSONL field holding the prompt (default: ``text``, then ``prompt``).

    Raises:
        SpecError: a missing file, an unknown split, or a value of an unsupported type.
    """
    if isinstance(prompts, PromptSource):
        return prompts
    if isinstance(prompts, torch.Tensor):
        if prompts.dtype.is_floating_point or prompts.dim() != 2:
            raise SpecError(
                f"token tensor must be integer [batch, pos], got {prompts.dtype} "
                f"{tuple(prompts.shape)}"
            )
        # rows become Python lists one at a time, never all at once (memory stays flat)
        return PromptSource(
            _rows_description(prompts), tokens=lambda: (row.tolist() for row in prompts)
        )
    if isinstance(prompts, Path):
        prompts = str(prompts)
    if isinstance(prompts, str):
        return _from_spec(prompts, field)
    if isinstance(prompts, Sequence) and all(isinstance(p, str) for p in prompts):
        items = list(prompts)
        desc = {"kind": "strings", "count": len(items), "sha256": sha256_json(items)}
        return PromptSource(desc, texts=lambda: iter(items))
    if isinstance(prompts, Sequence) and all(
        isinstance(p, Sequence) and all(isinstance(i, int) for i in p) for p in prompts
    ):
        items = [list(p) for p in prompts]
        return PromptSource(_rows_description(items), tokens=lambda: iter(items))
    raise SpecError(
        f"unsupported prompts of type {type(prompts).__name__}; expected a .txt or .jsonl path, "
        "'organism:SPLIT', 'cache:DIR', a list of strings or token ids, or an int tensor"
    )


def _rows_description(rows: Sequence[Sequence[int]] | torch.Tensor) -> dict[str, Any]:
    # content-hashed, so a rerun into a finished cache directory notices other rows
    return {"kind": "tokens", "count": len(rows), "sha256": hash_token_rows(rows)}


def _from_spec(spec: str, field: str | None) -> PromptSource:
    kind, sep, rest = spec.partition(":")
    if sep and kind == "organism":
        return _organism_split(rest)
    if sep and kind == "cache":
        if not rest:
            raise SpecError("prompt source 'cache:' names no directory; expected 'cache:DIR'")
        return _cache_rows(Path(rest))
    path = Path(spec).expanduser()
    if path.is_dir():
        raise SpecError(f"prompt file {spec!r} is a directory; expected a .txt or .jsonl file")
    if not path.is_file():
        raise SpecError(
            f"prompt file {spec!r} does not exist; expected a .txt or .jsonl file, "
            "'organism:SPLIT' or 'cache:DIR'"
        )
    desc = {"kind": "file", "name": path.name, "sha256": sha256_file(path)}
    if path.suffix == ".jsonl":
        desc["field"] = field
        return PromptSource(desc, texts=lambda: _jsonl_texts(path, field))
    return PromptSource(desc, texts=lambda: _text_lines(path))


def _organism_split(split: str) -> PromptSource:
    try:
        from interp.organism import organism_prompts
    except ImportError as exc:
        raise SpecError(f"organism:{split}: the model organism is not available ({exc})") from None
    items = list(organism_prompts(split))
    digest = "sha256:" + hashlib.sha256("\n".join(items).encode()).hexdigest()
    desc = {"kind": "organism", "split": split, "count": len(items), "sha256": digest}
    return PromptSource(desc, texts=lambda: iter(items))


def _cache_rows(root: Path) -> PromptSource:
    from interp.cache.reader import open_cache

    cache = open_cache(root)
    desc = {"kind": "cache", "cache_id": cache.id, "count": cache.n_rows}
    return PromptSource(desc, tokens=cache.iter_row_tokens)
