"""One readable script per finding of PAPERS.md, and the orchestrator of ``interp reproduce``.

Each ``experiments/eN_*.py`` module exposes ``FINDING`` (its number in PAPERS.md), ``TITLE``,
``run(ctx) -> dict`` (the numbers, under stable keys; figures and caches go through ``ctx``) and
``claim(results) -> Claim``; ``python -m experiments.eN_NAME --profile quick`` runs one alone.
Experiments use only the public API of ``interp``, ``probes`` and ``steering``.
"""

EXPERIMENTS: tuple[str, ...] = (
    "e1_info_gain",
    "e2_faithfulness",
    "e3_swapped_traces",
    "e4_markers",
    "e5_damage_proxy",
    "e6_elicitation",
    "e7_forking",
    "e8_backward",
    "e9_cot_length",
)
