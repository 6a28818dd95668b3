"""Prompt sources: where the token rows of a cache come from.

A source is a text file (one prompt per line), a JSONL file (a ``text`` or ``prompt`` field per
line, or a ``messages`` list of chat messages, rendered through the model's chat template when
tokenized), ``organism:SPLIT`` (a split of the built-in world), ``cache:DIR`` (the token rows of
an existing cache, for paired caches), a list of strings, or token ids (a tensor or list of
lists). :meth:`PromptSource.token_rows` turns any of them into token rows for a given model.
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
from interp.tasks.protocol import Prompt, check_messages

JSONL_FIELDS = ("text", "prompt")
MESSAGES_FIELD = "messages"


@dataclass(frozen=True)
class PromptSource:
    """A restartable stream of prompts plus a host-independent description of them.

    ``tokens`` yields id lists, or ``texts`` yields strings (tokenized by ``model.encode``), or
    ``prompts`` yields strings and chat messages (rendered by
    :func:`interp.tasks.render.render_prompt`). A JSONL source sets both ``prompts`` and
    ``texts``; its ``texts`` refuses, naming the line, a line that holds chat messages. Use
    :meth:`token_rows` to get token rows from any source.
    """

    description: dict[str, Any]
    texts: Callable[[], Iterator[str]] | None = None
    tokens: Callable[[], Iterator[list[int]]] | None = None
    prompts: Callable[[], Iterator[Prompt]] | None = None

    def token_rows(self, model: Any) -> Iterator[list[int]]:
        """Token rows of every prompt, as ``model`` is fed them.

        Text goes through ``model.encode`` (the checkpoint's BOS policy); chat messages through
        the model's chat template, encoded without adding special tokens again (one BOS), with
        the assistant header appended unless the last message is the assistant's.

        Raises:
            SpecError: chat messages for a model without a chat template.
        """
        if self.tokens is not None:
            return self.tokens()
        if self.prompts is not None:
            return (_render(model, p) for p in self.prompts())
        return map(model.encode, self.texts())


def _render(model: Any, prompt: Prompt) -> list[int]:
    if isinstance(prompt, str):
        return model.encode(prompt)
    from interp.tasks.render import render_prompt

    return render_prompt(model, prompt, add_generation_prompt=prompt[-1]["role"] != "assistant")


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


def _jsonl_prompts(path: Path, field: str | None) -> Iterator[tuple[int, Prompt]]:
    """``(line number, prompt)`` of each non-blank line: a string, or a tuple of chat messages."""
    for lineno, line in _numbered_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        fields = (field,) if field else (*JSONL_FIELDS, MESSAGES_FIELD)
        key = next((k for k in fields if isinstance(obj, dict) and k in obj), None)
        value = None if key is None else obj[key]
        if key == MESSAGES_FIELD and not isinstance(value, list):
            raise SpecError(
                f"{path}:{lineno}: {MESSAGES_FIELD!r} is {type(value).__name__}; expected a list of "
                "{'role', 'content'} chat messages"
            )
        if isinstance(value, str):
            yield lineno, value
        elif isinstance(value, list):
            yield lineno, check_messages(value, f"{path}:{lineno}")  # TaskError is a SpecError
        elif field:
            raise SpecError(
                f"{path}:{lineno}: expected an object whose field {field!r} holds text or a list of "
                "chat messages"
            )
        else:
            raise SpecError(
                f"{path}:{lineno}: expected an object with a string field "
                f"{' or '.join(repr(k) for k in JSONL_FIELDS)}, or a {MESSAGES_FIELD!r} list of chat "
                "messages"
            )


def _jsonl_texts(path: Path, field: str | None) -> Iterator[str]:
    for lineno, prompt in _jsonl_prompts(path, field):
        if not isinstance(prompt, str):
            raise SpecError(
                f"{path}:{lineno}: holds chat messages, and this use needs plain text; render them "
                "with the model (PromptSource.token_rows) or give a 'text' field"
            )
        yield prompt


def resolve_prompts(prompts: Any, field: str | None = None) -> PromptSource:
    """Turn any accepted prompt spec into a :class:`PromptSource`.

    Args:
        prompts: a path (``.txt`` or ``.jsonl``), ``organism:SPLIT``, ``cache:DIR``, a list of
            strings, a list of prompts some of which are chat messages (lists of
            ``{"role", "content"}``), a list of token-id lists, or an integer tensor ``[batch, pos]``.
        field: the JSONL field holding the prompt, text or chat messages (default: ``text``, then
            ``prompt``, then ``messages``).

    Raises:
        SpecError: a missing file, an unknown split, malformed chat messages, or a value of an
            unsupported type.
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
    if isinstance(prompts, Sequence) and prompts and all(
        isinstance(p, str) or _is_messages(p) for p in prompts
    ):
        chats = [p if isinstance(p, str) else check_messages(p, f"prompt {i}") for i, p in enumerate(prompts)]
        plain = [p if isinstance(p, str) else [dict(m) for m in p] for p in chats]
        desc = {"kind": "prompts", "count": len(chats), "sha256": sha256_json(plain)}
        return PromptSource(desc, prompts=lambda: iter(chats))
    if isinstance(prompts, Sequence) and all(
        isinstance(p, Sequence) and all(isinstance(i, int) for i in p) for p in prompts
    ):
        items = [list(p) for p in prompts]
        return PromptSource(_rows_description(items), tokens=lambda: iter(items))
    raise SpecError(
        f"unsupported prompts of type {type(prompts).__name__}; expected a .txt or .jsonl path, "
        "'organism:SPLIT', 'cache:DIR', a list of strings or token ids, or an int tensor"
    )


def _is_messages(p: Any) -> bool:
    return isinstance(p, list | tuple) and bool(p) and all(isinstance(m, dict) for m in p)


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
        return PromptSource(
            desc,
            texts=lambda: _jsonl_texts(path, field),
            prompts=lambda: (p for _, p in _jsonl_prompts(path, field)),
        )
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
