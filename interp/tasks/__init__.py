"""Tasks: what a probe or a steering sweep measures, for the organism and for real models alike.

A :class:`Task` holds examples (prompts as plain text or chat messages, gold answers, optional
gold steps, splits) and how to read a response (answer extraction, a step splitter, a scorer,
optionally a mistake-maker and a paraphraser). Built-in tasks: ``facts`` (public-knowledge
questions, filtered to those a model knows and split into rehearsed and held-out) and
``arithmetic`` (seeded multi-step word problems with gold steps); a user's ``.jsonl`` file or
``module:function``; and the organism's ``organism:fact_recall`` and ``organism:solve``, all
through :func:`resolve_task`. :func:`render_prompt` turns a prompt into token ids through the
model's chat template, with exactly one BOS.

Names are imported lazily, so that importing the package costs nothing until a name is used.
"""

from interp.lazy import lazy_exports

_EXPORTS = {
    "Message": "interp.tasks.protocol",
    "Prompt": "interp.tasks.protocol",
    "Example": "interp.tasks.protocol",
    "Task": "interp.tasks.protocol",
    "TaskError": "interp.tasks.protocol",
    "answers_match": "interp.tasks.protocol",
    "normalise_answer": "interp.tasks.protocol",
    "check_messages": "interp.tasks.protocol",
    "CueAnswer": "interp.tasks.protocol",
    "LineSteps": "interp.tasks.protocol",
    "render_prompt": "interp.tasks.render",
    "render_text": "interp.tasks.render",
    "render_example": "interp.tasks.render",
    "chat_template": "interp.tasks.render",
    "end_of_turn_id": "interp.tasks.render",
    "stop_token_id": "interp.tasks.render",
    "join_response": "interp.tasks.render",
    "facts_task": "interp.tasks.facts",
    "known_facts": "interp.tasks.facts",
    "fact_logprob": "interp.tasks.facts",
    "arithmetic_task": "interp.tasks.arithmetic",
    "load_jsonl_task": "interp.tasks.jsonl",
    "resolve_task": "interp.tasks.resolve",
    "SPEC_FORMS": "interp.tasks.resolve",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
