"""Prompts into token ids: plain text by the checkpoint's BOS policy, chat messages by its template.

The one rule: a chat template already writes every special token the model expects (its BOS,
role markers), so a rendered conversation is encoded WITHOUT adding special tokens again; a
plain prompt is encoded by :meth:`interp.models.Model.encode`, which adds the checkpoint's
BOS when its tokenizer does. Responses are encoded as continuations of the rendered prompt.
"""

import logging
from collections.abc import Sequence
from typing import Any

from interp.tasks.protocol import Example, Message, Prompt, TaskError, check_prompt

log = logging.getLogger(__name__)

_SENTINEL = "\u2063interp-sentinel\u2063"


def _model(model: Any):
    from interp.models import Model, as_model

    return model if isinstance(model, Model) else as_model(model)


def _hf_tokenizer(model) -> Any:
    tok = model.tokenizer
    return getattr(tok, "tok", tok)


def chat_template(model: Any) -> str | None:
    """The model's chat template (Jinja source), or ``None`` when it has none."""
    template = getattr(_hf_tokenizer(_model(model)), "chat_template", None)
    return template if isinstance(template, str) and template.strip() else None


def render_text(model: Any, prompt: Prompt | Sequence[Message], *, add_generation_prompt: bool = True) -> str:
    """The text a prompt is fed as: plain text as is, messages through the chat template.

    Args:
        model: a :class:`~interp.models.Model` (or a module it wraps).
        prompt: text, or chat messages.
        add_generation_prompt: end with the template's assistant header (messages only).

    Raises:
        TaskError: messages that are malformed, or that the template refuses to render.
        SpecError: messages for a model without a chat template.
    """
    prompt = check_prompt(prompt)
    if isinstance(prompt, str):
        return prompt
    m = _model(model)
    if chat_template(m) is None:
        from interp.errors import SpecError

        raise SpecError(
            f"model {m.spec!r} has no chat template, so it cannot render chat messages; pass the "
            "prompt as plain text instead"
        )
    try:
        text = _hf_tokenizer(m).apply_chat_template(
            [dict(msg) for msg in prompt], tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # jinja2 raises its own errors (e.g. raise_exception in a template)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TaskError(f"the chat template of {m.spec!r} cannot render these messages: {first}") from None
    if not isinstance(text, str):
        raise TaskError(f"the chat template of {m.spec!r} rendered {type(text).__name__}, not text")
    return text


def render_prompt(
    model: Any, prompt: Prompt | Sequence[Message], *, add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of a prompt, ready to be continued by the model.

    Plain text goes through ``model.encode(text)`` (the checkpoint's BOS policy); messages go
    through the tokenizer's chat template (``apply_chat_template(..., tokenize=False)``) and are
    then encoded without special tokens, since the template already holds them: one BOS, never
    two.

    Args:
        model: a :class:`~interp.models.Model` (or a module it wraps) with a tokenizer.
        prompt: text, or chat messages ``({"role": "user", "content": ...}, ...)``.
        add_generation_prompt: end with the assistant header so that the model answers next.

    Returns:
        The token ids.

    Raises:
        SpecError: messages for a model without a chat template (pass plain text), or a model
            without a tokenizer.
        TaskError: malformed messages or an empty prompt.

    Example:
        >>> render_prompt(None, "")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.tasks.protocol.TaskError: prompt: empty prompt; expected text or chat messages
    """
    prompt = check_prompt(prompt)
    m = _model(model)
    if isinstance(prompt, str):
        return m.encode(prompt)
    text = render_text(m, prompt, add_generation_prompt=add_generation_prompt)
    return m.encode(text, add_special_tokens=False)  # the template holds the special tokens


def _special_ids(hf: Any) -> set[int]:
    ids = set(getattr(hf, "all_special_ids", None) or ())
    added = getattr(hf, "added_tokens_decoder", None) or {}
    ids |= {int(i) for i, t in added.items() if getattr(t, "special", False)}
    return ids


def end_of_turn_id(model: Any) -> int | None:
    """The token that ends an assistant turn in the model's chat template; ``None`` without one.

    Read from the template itself: the first special token it writes after an assistant
    message's content (``<|im_end|>`` for ChatML); the tokenizer's EOS when the template writes
    none there.
    """
    m = _model(model)
    if chat_template(m) is None:
        return None
    hf = _hf_tokenizer(m)
    eos = getattr(hf, "eos_token_id", None)
    try:
        text = hf.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}],
            tokenize=False, add_generation_prompt=False,
        )
    except Exception:  # a template that cannot end on an assistant turn: fall back to EOS
        text = ""
    tail = text.partition(_SENTINEL)[2].lstrip(" ")
    ids = m.encode(tail, add_special_tokens=False) if tail else []
    if ids and ids[0] in _special_ids(hf):
        return int(ids[0])
    return None if eos is None else int(eos)


def stop_token_id(model: Any, stop: str | None = None) -> int | None:
    """The id that ends a generated response: the end of a chat turn, else ``stop`` when it is
    one token, else ``None``."""
    eot = end_of_turn_id(model)
    if eot is not None:
        return eot
    if stop:
        ids = _model(model).encode(stop, add_special_tokens=False)
        if len(ids) == 1:
            return ids[0]
        log.info("stop %r is %d tokens; generation runs to its token budget", stop, len(ids))
    return None


def join_response(prompt_text: str, response: str) -> str:
    """A plain prompt and its response: one space between them unless either side has whitespace.

    Example:
        >>> join_response("Q: 2 + 2?", "4"), join_response("Q: 2 + 2?\\n", "4")
        ('Q: 2 + 2? 4', 'Q: 2 + 2?\\n4')
    """
    if not prompt_text or not response or prompt_text[-1].isspace() or response[0].isspace():
        return prompt_text + response
    return prompt_text + " " + response


def render_example(
    model: Any, ex: Example, response: str | None = None, *, end_turn: bool = True
) -> tuple[list[int], list[int]]:
    """Prompt ids and response ids of an example, for training and scoring.

    The prompt is rendered as by :func:`render_prompt` (with the generation prompt). The
    response (default: the gold answer ``ex.answer``) is encoded as a continuation of the
    rendered prompt text: the whole text is encoded and split after the prompt's ids, or, when a
    token merges across that boundary, the response is encoded alone without special tokens. A
    plain prompt is followed by its response as :func:`join_response` joins them. For chat
    models the end-of-turn token (:func:`end_of_turn_id`) is appended when ``end_turn``.

    Args:
        model: a :class:`~interp.models.Model` with a tokenizer.
        ex: the example.
        response: the assistant's text (``task.solution(ex)``, a model's own response, ...).
        end_turn: append the end-of-turn token (chat models only); ``False`` for a response
            that the model is to continue (a forced answer after a cue).

    Returns:
        ``(prompt_ids, response_ids)``; ``prompt_ids + response_ids`` is the full sequence.

    Raises:
        SpecError: a chat example for a model without a chat template.
    """
    m = _model(model)
    text = ex.answer if response is None else response
    if not isinstance(text, str):
        raise TaskError(f"example {ex.id!r}: response {text!r}; expected text")
    prompt_ids = render_prompt(m, ex.prompt)
    prompt_text = render_text(m, ex.prompt)
    if ex.is_chat:
        full_text = prompt_text + text
        full = m.encode(full_text, add_special_tokens=False)
    else:
        full_text = join_response(prompt_text, text)
        full = m.encode(full_text)
    if full[: len(prompt_ids)] == prompt_ids:
        response_ids = full[len(prompt_ids) :]
    else:  # a token merges across the boundary: keep the prompt's own ids, encode the rest alone
        response_ids = m.encode(full_text[len(prompt_text) :], add_special_tokens=False)
    if ex.is_chat and end_turn:
        eot = end_of_turn_id(m)
        if eot is not None:
            response_ids = [*response_ids, eot]
    return prompt_ids, response_ids
