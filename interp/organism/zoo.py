"""Building the zoo: train (or reuse) every model of a profile and its doses, measure, save."""

import copy
import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from interp import __version__
from interp.atomic import atomic_write_json
from interp.fingerprint import fingerprint_module
from interp.organism.evaluate import evaluate_model
from interp.organism.profiles import (
    DOSE_SEP,
    MODEL_NAMES,
    ModelSpec,
    ProfileConfig,
    ZooConfigError,
    profile_config,
)
from interp.organism.rl import relative_weight_change, rl_finetune
from interp.organism.store import (
    FILES,
    WORLD_FILE,
    load_organism,
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


def dose_name(name: str, steps: int) -> str:
    """``sft-answer@50``: the zoo name of ``name``'s run saved after ``steps`` steps."""
    return f"{name}{DOSE_SEP}{steps}"


def _world_for(pc: ProfileConfig, world_seed: int) -> World:
    return make_world(WorldConfig(**{**asdict(pc.world), "seed": world_seed}))


def _check_seed(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ZooConfigError(f"{name}={value!r}; expected an int >= 0")


def build_zoo(
    profile: str = "quick",
    out_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 2,
    only: list[str] | None = None,
    world_seed: int | None = None,
) -> list[dict[str, Any]]:
    """Train or reuse every model of a profile, and each of its doses, and write the zoo.

    A model whose files exist and whose card holds the same recipe (profile settings, seed,
    world, tokenizer and parent fingerprint), with every dose it saved also complete and of
    the same recipe, is reused, not retrained. When a run is redone (a dose was added, say),
    each dose and the final model whose weights come out identical keep their measurements.

    Args:
        profile: ``tiny`` (seconds, for tests), ``quick`` (minutes on 2 CPU cores) or ``full``.
        out_dir: the zoo; defaults to ``$INTERP_ZOO``, else ``~/.cache/interp/zoo``.
        seed: seeds every model (each model's own seed derives from it and its name), and the
            world too unless ``world_seed`` is given.
        progress: show tqdm bars.
        threads: torch intra-op threads while building (``None`` leaves the setting).
        only: build these models (and the models they need) instead of all.
        world_seed: seeds the world (its graph, colours and splits); ``None``: ``seed``, so a
            zoo built before world and model seeds were separate is reused as it is. Each card
            records both under ``seeds``.

    Returns:
        The card of each model built or reused (not of its doses), in build order.

    Raises:
        ValueError: an unknown profile or model name, or a seed that is not an int >= 0.
    """
    pc = profile_config(profile)
    _check_seed("seed", seed)
    if world_seed is None:
        world_seed = seed
    _check_seed("world_seed", world_seed)
    if only is not None:
        unknown = sorted(set(only) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"unknown models {unknown}; expected some of {MODEL_NAMES}")
    zoo = resolve_zoo_dir(out_dir)
    zoo.mkdir(parents=True, exist_ok=True)
    world = _world_for(pc, world_seed)
    vocab = organism_vocab(world.n_nodes, world.config.n_colours)
    tok = WordTokenizer(vocab)
    world_doc = {
        "world": world.to_json(),
        "vocab": vocab,
        "tokenizer_hash": tok.hash(),
        "world_hash": world.hash(),
    }
    if not (zoo / WORLD_FILE).is_file() or read_json(zoo / WORLD_FILE) != world_doc:
        atomic_write_json(zoo / WORLD_FILE, world_doc)

    specs = pc.specs()
    wanted = _with_dependencies(specs, only)
    models: dict[str, HookedTransformer] = {}
    cards: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    with torch_threads(threads), deterministic():
        for spec in specs:
            if spec.name in wanted:
                builder = _Builder(spec, pc, world, tok, zoo, seed, models, cards, progress, world_seed)
                cards[spec.name], models[spec.name] = builder.build()
    log.info("zoo %s (%s) ready in %.1f s", zoo, profile, time.perf_counter() - t_all)
    return list(cards.values())


def _with_dependencies(specs: list[ModelSpec], only: list[str] | None) -> set[str]:
    """``only`` and every model they need: parents and ``budget_from`` models."""
    if only is None:
        return {s.name for s in specs}
    by_name = {s.name: s for s in specs}
    out: set[str] = set()
    todo = list(only)
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo += [d for d in (by_name[name].parent, by_name[name].budget_from) if d]
    return out


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


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as it reads back from JSON (tuples become lists), so recipes compare equal."""
    return json.loads(json.dumps(doc))


def _complete_card(folder: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The card of a complete model folder built from ``recipe``, else ``None``."""
    if not all((folder / f).is_file() for f in FILES):
        return None
    try:
        card = read_json(folder / "card.json")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) and card.get("recipe") == recipe else None


class _Builder:
    """Builds (or reuses) one model of the zoo and its doses."""

    def __init__(
        self,
        spec: ModelSpec,
        pc: ProfileConfig,
        world: World,
        tok: WordTokenizer,
        zoo: Path,
        seed: int,
        models: dict[str, HookedTransformer],
        cards: dict[str, dict[str, Any]],
        progress: bool,
        world_seed: int,
    ) -> None:
        self.spec, self.pc, self.world, self.tok, self.zoo = spec, pc, world, tok, zoo
        self.progress = progress
        # not part of the recipe (the world hash and the model's seed are): older zoos stay reusable
        self.seeds = {"world": world_seed, "model": seed}
        self.parent = models[spec.parent] if spec.parent else None
        self.mseed = model_seed(seed, spec.name)
        self.rl = spec.rl
        budget = None
        if spec.budget_from is not None and spec.rl is not None:
            src = cards[spec.budget_from]
            steps = int(src["train_stats"]["steps_run"])
            self.rl = replace(spec.rl, steps=steps)
            budget = {"from": spec.budget_from, "steps": steps, "fingerprint": src["fingerprint"]}
        self.run_recipe = _plain(
            {
                **spec.recipe(),
                "rl": self.rl.to_dict() if self.rl else None,
                "budget": budget,
                "profile": pc.name,
                "seed": self.mseed,
                "zoo_seed": seed,
                "world": world.hash(),
                "tokenizer": tok.hash(),
                "format_version": FORMAT_VERSION,
                "parent_fingerprint": fingerprint_module(self.parent) if self.parent is not None else None,
            }
        )
        self.final_recipe = {**self.run_recipe, "eval": _plain(asdict(pc.eval))}
        self.doses = [d for d in spec.doses if d < (self.rl.steps if self.rl else spec.steps)]

    def dose_recipe(self, steps: int) -> dict[str, Any]:
        return {**self.run_recipe, "dose_eval": _plain(asdict(self.pc.dose_eval)), "dose_steps": steps}

    def build(self) -> tuple[dict[str, Any], HookedTransformer]:
        name, zoo = self.spec.name, self.zoo
        old = _complete_card(zoo / name, self.final_recipe)
        if old is not None and old.get("doses_asked") == list(self.spec.doses):
            saved = [int(d) for d in old.get("doses", [])]
            if all(_complete_card(zoo / dose_name(name, d), self.dose_recipe(d)) for d in saved):
                log.info("%s: reusing %s (doses %s)", name, zoo / name, saved or "none")
                self._remove_stale_doses(saved)
                for d in saved:
                    dose = zoo / dose_name(name, d)
                    self._record_seeds(dose, read_json(dose / "card.json"))
                return self._record_seeds(zoo / name, old), load_organism(name, zoo)[0]

        t0 = time.perf_counter()
        model, stats, snaps = self._train()
        t_train = time.perf_counter() - t0
        saved = sorted(d for d in snaps if d < stats["steps_run"])
        for d in saved:
            self._save_dose(d, snaps[d])
        card = self._save_final(model, stats, old, saved, t0, t_train)
        self._remove_stale_doses(saved)
        return card, model

    def _train(self) -> tuple[HookedTransformer, dict[str, Any], dict[int, HookedTransformer]]:
        spec = self.spec
        parent = self.parent
        model = (
            copy.deepcopy(parent)
            if parent is not None
            else build_model(spec.shape, len(self.tok), self.mseed)
        )
        snaps: dict[int, HookedTransformer] = {}

        def keep(step: int, m: HookedTransformer) -> None:
            snaps[step] = copy.deepcopy(m).eval()

        hooks = {"snapshot_at": self.doses, "on_snapshot": keep}
        if self.rl is not None:
            reference = copy.deepcopy(parent).eval() if parent is not None and self.rl.kl_coef > 0 else None
            stats = rl_finetune(
                model, self.world, self.tok, self.rl, self.mseed, reference, spec.name, self.progress, **hooks
            )
        else:
            cfg = spec.train
            if cfg is None:  # ModelSpec refuses this already
                raise ZooConfigError(f"model {spec.name!r} has no train= for its LM training")
            if spec.distill is not None:
                from interp.organism.distill import distilled_sampler

                sampler: Any = distilled_sampler(parent, self.tok, self.world, spec.distill, self.mseed)
            else:
                sampler = ExampleSampler(self.world, spec.data, self.mseed)
            stats = train_lm(model, sampler, self.tok, cfg, self.mseed, spec.name, self.progress, **hooks)
            if spec.distill is not None:
                stats["distill"] = sampler.stats
        return model.eval(), stats, snaps

    def _weight_change(self, model: HookedTransformer) -> float | None:
        if self.parent is None:
            return None
        return round(relative_weight_change(model, self.parent), 6)

    def _save_dose(self, steps: int, model: HookedTransformer) -> None:
        name = dose_name(self.spec.name, steps)
        folder, recipe = self.zoo / name, self.dose_recipe(steps)
        fingerprint = fingerprint_module(model)
        old = _complete_card(folder, recipe)
        if old is not None and old.get("fingerprint") == fingerprint:
            log.info("%s: reusing %s", name, folder)
            self._record_seeds(folder, old)
            return
        t0 = time.perf_counter()
        metrics = evaluate_model(model, self.tok, self.world, self.spec.fmt, self.pc.dose_eval)
        card = {
            "name": name,
            "dose_of": self.spec.name,
            "dose_steps": steps,
            "format": self.spec.fmt,
            "parent": self.spec.parent,
            "recipe": recipe,
            "steps": steps,
            "seed": self.mseed,
            "seeds": self.seeds,
            "fingerprint": fingerprint,
            "relative_weight_change": self._weight_change(model),
            "n_params": sum(p.numel() for p in model.parameters()),
            "eval_seconds": round(time.perf_counter() - t0, 3),
            "package_version": __version__,
            "torch_version": torch.__version__,
            **{k: round(float(v), 4) for k, v in metrics.items()},
        }
        self._write(folder, model, card)
        log.info(
            "%s: relative weight change %s, solve id %.2f, answer id %.2f",
            name,
            card["relative_weight_change"],
            metrics.get("solve_rate_id", float("nan")),
            metrics.get("answer_accuracy_id", float("nan")),
        )

    def _save_final(
        self,
        model: HookedTransformer,
        stats: dict[str, Any],
        old: dict[str, Any] | None,
        saved: list[int],
        t0: float,
        t_train: float,
    ) -> dict[str, Any]:
        spec, folder = self.spec, self.zoo / self.spec.name
        fingerprint = fingerprint_module(model)
        doses = {"doses": saved, "doses_asked": list(spec.doses)}
        if old is not None and old.get("fingerprint") == fingerprint:
            # the same weights as on disk: only the list of doses may have changed
            card = {**old, **doses, "seeds": self.seeds}
            atomic_write_json(folder / "card.json", card)
            return card
        details: dict[str, list] = {}
        metrics = evaluate_model(model, self.tok, self.world, spec.fmt, self.pc.eval, details)
        card = {
            "name": spec.name,
            "format": spec.fmt,
            "parent": spec.parent,
            "recipe": self.final_recipe,
            "steps": int(stats["steps_run"]),
            "dose_steps": int(stats["steps_run"]),
            **doses,
            "seed": self.mseed,
            "seeds": self.seeds,
            "fingerprint": fingerprint,
            "relative_weight_change": self._weight_change(model),
            "n_params": sum(p.numel() for p in model.parameters()),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "train_seconds": round(t_train, 3),
            "train_stats": _plain(stats),
            "package_version": __version__,
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            **({"budget_from": spec.budget_from} if spec.budget_from else {}),
            **{k: round(float(v), 4) for k, v in metrics.items()},
            # per-problem outcomes of that evaluation, for intervals over problems
            "per_problem": details,
        }
        if spec.parent is not None:
            card.update(_gain_vs_parent(spec, metrics, read_json(self.zoo / spec.parent / "card.json")))
        self._write(folder, model, card)
        shown = (
            "fact_recall",
            "solve_rate_id",
            "solve_rate_ood",
            "answer_accuracy_id",
            "markers_per_response",
        )
        log.info(
            "%s: %.1f s, %d steps, weight change %s, %s",
            spec.name,
            card["build_seconds"],
            card["steps"],
            card["relative_weight_change"],
            ", ".join(f"{k} {metrics[k]:.2f}" for k in shown if k in metrics),
        )
        return card

    def _write(self, folder: Path, model: HookedTransformer, card: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "card.json").unlink(missing_ok=True)  # a half-rewritten model must not look complete
        save_weights_atomic(folder / "model.safetensors", model)
        atomic_write_json(folder / "config.json", self.spec.shape.hooked_config(len(self.tok)))
        atomic_write_json(folder / "card.json", card)

    def _record_seeds(self, folder: Path, card: dict[str, Any]) -> dict[str, Any]:
        """``card`` with this build's seeds, rewritten when a card of an older build lacks them."""
        if card.get("seeds") != self.seeds:
            card = {**card, "seeds": self.seeds}
            atomic_write_json(folder / "card.json", card)
        return card

    def _remove_stale_doses(self, saved: list[int]) -> None:
        """Dose folders of this model left by an earlier build that this one did not save."""
        pattern = re.compile(re.escape(self.spec.name + DOSE_SEP) + r"[0-9]+")
        keep = {dose_name(self.spec.name, d) for d in saved}
        for p in self.zoo.iterdir():
            if p.is_dir() and pattern.fullmatch(p.name) and p.name not in keep:
                log.info("%s: removing %s (a dose of an earlier build)", self.spec.name, p)
                shutil.rmtree(p)
