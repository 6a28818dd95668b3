"""Building the zoo: train (or reuse) every model of a profile, measure it, and save it."""

import copy
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import torch

from interp import __version__
from interp.atomic import atomic_write_json
from interp.fingerprint import fingerprint_module
from interp.organism.evaluate import evaluate_model
from interp.organism.profiles import MODEL_NAMES, ModelSpec, ProfileConfig, profile_config
from interp.organism.rl import rl_finetune
from interp.organism.store import (
    FILES,
    WORLD_FILE,
    read_json,
    resolve_zoo_dir,
    save_weights_atomic,
)
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from interp.organism.traces import FORMAT_VERSION, ExampleSampler
from interp.organism.train import build_model, deterministic, torch_threads, train_lm
from interp.organism.world import World, WorldConfig, make_world

log = logging.getLogger(__name__)

METRICS = (
    "fact_recall",
    "solve_rate_id",
    "solve_rate_ood",
    "answer_accuracy_id",
    "answer_accuracy_ood",
    "answer_only_accuracy",
    "trace_validity",
    "markers_per_response",
)


def model_seed(seed: int, name: str) -> int:
    """The seed of one model, derived from the zoo seed and the model's name."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)


def _world_for(pc: ProfileConfig, seed: int) -> World:
    wc = pc.world
    return make_world(WorldConfig(**{**wc.__dict__, "seed": seed}))


def build_zoo(
    profile: str = "quick",
    out_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 2,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Train or reuse every model of a profile and write the zoo.

    A model whose three files exist and whose card holds the same recipe (profile settings,
    seed, world, tokenizer and parent fingerprint) is reused, not retrained.

    Args:
        profile: ``tiny`` (seconds, for tests), ``quick`` (minutes on 2 CPU cores) or ``full``.
        out_dir: the zoo; defaults to ``$INTERP_ZOO``, else ``~/.cache/interp/zoo``.
        seed: seeds the world and every model.
        progress: show tqdm bars.
        threads: torch intra-op threads while building (``None`` leaves the setting).
        only: build these models (and the parents they need) instead of all.

    Returns:
        The card of each model built or reused, in build order.

    Raises:
        ValueError: an unknown profile or model name.
    """
    pc = profile_config(profile)
    if only is not None:
        unknown = sorted(set(only) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"unknown models {unknown}; expected some of {MODEL_NAMES}")
    zoo = resolve_zoo_dir(out_dir)
    zoo.mkdir(parents=True, exist_ok=True)
    world = _world_for(pc, seed)
    tok = WordTokenizer(organism_vocab(world.n_nodes))
    world_doc = {
        "world": world.to_json(),
        "vocab": organism_vocab(world.n_nodes),
        "tokenizer_hash": tok.hash(),
        "world_hash": world.hash(),
    }
    if not (zoo / WORLD_FILE).is_file() or read_json(zoo / WORLD_FILE) != world_doc:
        atomic_write_json(zoo / WORLD_FILE, world_doc)

    specs = pc.specs()
    wanted = _with_parents(specs, only)
    built: dict[str, Any] = {}
    cards = []
    t_all = time.perf_counter()
    with torch_threads(threads), deterministic():
        for spec in specs:
            if spec.name not in wanted:
                continue
            parent = built.get(spec.parent) if spec.parent else None
            card, model = _build_one(spec, pc, world, tok, zoo, seed, parent, progress)
            built[spec.name] = model
            cards.append(card)
    log.info("zoo %s (%s) ready in %.1f s", zoo, profile, time.perf_counter() - t_all)
    return cards


def _gain_vs_parent(
    spec: ModelSpec, metrics: dict[str, float], parent_card: dict[str, Any]
) -> dict[str, Any]:
    """Did this fine-tune raise final-answer accuracy in its own format above its parent's, in that format?"""
    key = "answer_only_accuracy" if spec.fmt == "answer" else "cot_answer_accuracy_id"
    parent = float(parent_card[key])
    gain = float(metrics["answer_accuracy_id"]) - parent
    return {
        "parent_answer_accuracy_id_same_format": round(parent, 4),
        "answer_accuracy_gain_vs_parent": round(gain, 4),
        "raised_answer_accuracy": bool(gain > 0),
    }


def _with_parents(specs: list[ModelSpec], only: list[str] | None) -> set[str]:
    if only is None:
        return {s.name for s in specs}
    by_name = {s.name: s for s in specs}
    out: set[str] = set()
    for name in only:
        while name is not None and name not in out:
            out.add(name)
            name = by_name[name].parent
    return out


def _build_one(
    spec: ModelSpec,
    pc: ProfileConfig,
    world: World,
    tok: WordTokenizer,
    zoo: Path,
    seed: int,
    parent: Any,
    progress: bool,
) -> tuple[dict[str, Any], Any]:
    from interp.organism.store import load_organism

    folder = zoo / spec.name
    mseed = model_seed(seed, spec.name)
    recipe = {
        **spec.recipe(),
        "profile": pc.name,
        "seed": mseed,
        "zoo_seed": seed,
        "world": world.hash(),
        "tokenizer": tok.hash(),
        "format_version": FORMAT_VERSION,
        "parent_fingerprint": fingerprint_module(parent) if parent is not None else None,
        "eval": pc.eval.__dict__,
    }
    card_path = folder / "card.json"
    if all((folder / f).is_file() for f in FILES) and read_json(card_path).get("recipe") == recipe:
        log.info("%s: reusing %s", spec.name, folder)
        model, _ = load_organism(spec.name, zoo)
        return read_json(card_path), model

    t0 = time.perf_counter()
    if parent is not None:
        model = copy.deepcopy(parent)
    else:
        model = build_model(spec.shape, len(tok), mseed)
    if spec.rl is not None:
        reference = copy.deepcopy(parent).eval() if spec.rl.kl_coef > 0 else None
        stats = rl_finetune(model, world, tok, spec.rl, mseed, reference, spec.name, progress)
    elif spec.data is not None and spec.train is not None:
        sampler = ExampleSampler(world, spec.data, mseed)
        stats = train_lm(model, sampler, tok, spec.train, mseed, spec.name, progress)
    else:
        raise ValueError(f"model {spec.name!r} has neither an RL nor an LM training recipe")
    t_train = time.perf_counter() - t0
    metrics = evaluate_model(model, tok, world, spec.fmt, pc.eval)
    build_seconds = time.perf_counter() - t0
    card = {
        "name": spec.name,
        "format": spec.fmt,
        "parent": spec.parent,
        "recipe": recipe,
        "steps": spec.steps,
        "seed": mseed,
        "fingerprint": fingerprint_module(model),
        "n_params": sum(p.numel() for p in model.parameters()),
        "build_seconds": round(build_seconds, 3),
        "train_seconds": round(t_train, 3),
        "train_stats": stats,
        "package_version": __version__,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        **{k: round(float(v), 4) for k, v in metrics.items()},
    }
    if spec.parent is not None:
        card.update(_gain_vs_parent(spec, metrics, read_json(zoo / spec.parent / "card.json")))
    folder.mkdir(parents=True, exist_ok=True)
    card_path.unlink(missing_ok=True)  # a half-rewritten model must not look complete
    save_weights_atomic(folder / "model.safetensors", model)
    atomic_write_json(folder / "config.json", spec.shape.hooked_config(len(tok)))
    atomic_write_json(card_path, card)
    log.info(
        "%s: %.1f s, fact %.2f, solve id %.2f ood %.2f, answer id %.2f, answer-only %.2f, "
        "validity %.2f, markers %.1f",
        spec.name,
        build_seconds,
        metrics["fact_recall"],
        metrics["solve_rate_id"],
        metrics["solve_rate_ood"],
        metrics["answer_accuracy_id"],
        metrics["answer_only_accuracy"],
        metrics["trace_validity"],
        metrics["markers_per_response"],
    )
    return card, model
