"""Tiny chat Llamas sharing one BPE trained on arithmetic problems and checked answers, as the
real-model stage tests build them (``make_chat_tokenizer`` / ``make_chat_llama`` are fixtures of
tests/conftest.py)."""

CHECKED = "7 + 5 = 12. Wait, let me check: 7 + 5 = 12.\nAnswer: 12"  # two phrases: Wait, check


def chat_llamas(make_chat_tokenizer, make_chat_llama, labels: tuple[str, ...], prefix: str) -> dict[str, str]:
    """One tiny chat Llama per label (seeds 0, 1, ...): ``label -> hf:DIR``."""
    from interp.tasks.arithmetic import arithmetic_task

    arith = arithmetic_task(n=8, seed=0)
    corpus = [m["content"] for ex in arith.examples for m in ex.prompt]
    corpus += [arith.solution(ex, with_checks=c) for ex in arith.examples for c in (False, True)]
    corpus += [CHECKED, "user assistant wait check verify"]
    tok = make_chat_tokenizer(corpus, 400, template="role")
    return {
        label: f"hf:{make_chat_llama(tok, seed=seed, name=f'{prefix}_{label}')}"
        for seed, label in enumerate(labels)
    }
