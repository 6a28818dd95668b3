"""Decoding-time tuning, no weight update: proxy-tuning (PAPERS.md §5) and CoT-decoding (§6).

This module gathers both under one name; they live in :mod:`steering.proxy_tuning`
(:func:`proxy_tune`, ``base + alpha * (expert - antiexpert)``, Liu et al. 2024) and
:mod:`steering.cot_decoding` (:func:`cot_decode`, top-``k`` first tokens ranked by answer
confidence, Wang & Zhou 2024).
"""

from steering.cot_decoding import (
    AnswerSpan,
    CotConfig,
    CotResult,
    answer_confidence,
    cot_decode,
    marker_answer_span,
    organism_answer_span,
    top2_margin,
)
from steering.proxy_tuning import (
    ProxyConfig,
    ProxyResult,
    VocabularyMismatchError,
    amplify_difference,
    check_same_vocab,
    proxy_logits,
    proxy_tune,
)

__all__ = [
    "AnswerSpan",
    "CotConfig",
    "CotResult",
    "ProxyConfig",
    "ProxyResult",
    "VocabularyMismatchError",
    "amplify_difference",
    "answer_confidence",
    "check_same_vocab",
    "cot_decode",
    "marker_answer_span",
    "organism_answer_span",
    "proxy_logits",
    "proxy_tune",
    "top2_margin",
]
