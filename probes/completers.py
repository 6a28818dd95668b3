"""Completers: what the faithfulness tests need of a model, greedy continuations of texts.

A :class:`Completer` is a loaded :class:`~interp.models.Model` decoded greedily
(:class:`ModelCompleter`, ``HookedTransformer`` or ``TransformerBridge``) or a plain function
``text -> continuation`` (:class:`TextCompleter`: an API model, or hand-set behaviour in a test).
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

# The name these warnings were always logged under, before this module was split out of it.
log = logging.getLogger("probes.faithfulness")


@runtime_checkable
class Completer(Protocol):
    """What the tests need of a model: greedy continuations of texts, and token counts.

    A completer may also have ``max_prompt_tokens`` (an int): longer texts are not sent to it;
    their answer is ``None`` (and the paraphrase test leaves such problems out).
    """

    def complete(self, texts: Sequence[str], max_new_tokens: int, stop: str | None) -> list[str]: ...

    def n_tokens(self, text: str) -> int: ...


class TextCompleter:
    """A :class:`Completer` from a function ``text -> continuation`` (tokens are words).

    The continuation is cut after ``max_new_tokens`` words and after the first ``stop`` word.

    Example:
        >>> c = TextCompleter(lambda text: "x y E z")
        >>> c.complete(["q"], max_new_tokens=8, stop="E"), c.n_tokens("a b c")
        (['x y E'], 3)
    """

    def __init__(self, fn: Callable[[str], str]) -> None:
        self.fn = fn

    def complete(self, texts: Sequence[str], max_new_tokens: int, stop: str | None) -> list[str]:
        out = []
        for t in texts:
            words = self.fn(t).split()[:max_new_tokens]
            if stop is not None and stop in words:
                words = words[: words.index(stop) + 1]
            out.append(" ".join(words))
        return out

    def n_tokens(self, text: str) -> int:
        return len(text.split())


class ModelCompleter:
    """A :class:`Completer` over a loaded model: batched greedy decoding of encoded texts.

    Decoding is :func:`interp.generation.generate`: left-padded batches with a key-value cache,
    for ``HookedTransformer`` and ``TransformerBridge`` alike.

    Args:
        model: a :class:`~interp.models.Model`, or a module :func:`~interp.models.load_model` wraps.
        batch_size: most sequences per forward pass.

    Raises:
        SpecError: the model has no tokenizer.
    """

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        from interp.errors import SpecError
        from interp.models import load_model

        self.model = load_model(model)
        if self.model.tokenizer is None:
            raise SpecError(
                f"model {self.model.spec!r} has no tokenizer; wrap it as interp.models.Model(module, "
                "tokenizer, spec) so that texts can be encoded"
            )
        self.batch_size = batch_size
        self.max_prompt_tokens = self.model.n_ctx - 1

    def n_tokens(self, text: str) -> int:
        return len(self.model.encode(text))

    def _stop_id(self, stop: str | None) -> int | None:
        if stop is None:
            return None
        ids = self.model.encode(stop, add_special_tokens=False)
        if len(ids) != 1:
            log.warning("stop word %r is %d tokens; generation runs to its budget", stop, len(ids))
            return None
        return ids[0]

    def complete(self, texts: Sequence[str], max_new_tokens: int, stop: str | None) -> list[str]:
        from interp.generation import generate

        ids = [self.model.encode(t) for t in texts]
        for t, row in zip(texts, ids, strict=True):
            if len(row) >= self.model.n_ctx:
                raise ValueError(
                    f"text of {len(row)} tokens does not fit the model's context of {self.model.n_ctx}: "
                    f"{t[:80]!r}; use shorter chains of thought"
                )
        outs = generate(
            self.model,
            ids,
            max_new_tokens,
            stop_id=self._stop_id(stop),
            batch_size=self.batch_size,
        )
        return [self.model.decode(o) for o in outs]
