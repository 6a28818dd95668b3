"""The zoo on disk: where it lives, atomic writes, and loading organisms, their world and prompts.

Layout of a zoo directory::

    world.json             the graph, the problem splits and the tokenizer vocabulary
    NAME/model.safetensors the weights
    NAME/config.json       HookedTransformerConfig keyword arguments
    NAME/card.json         recipe, seed, fingerprint, build time and measured metrics
"""

import json
import os
from pathlib import Path
from typing import Any

from interp.atomic import atomic_write_bytes
from interp.errors import SpecError
from interp.organism.tokenizer import WordTokenizer
from interp.organism.traces import answer_prompt, cot_prompt, fact_prompt
from interp.organism.world import SPLITS, World

ZOO_ENV = "INTERP_ZOO"
WORLD_FILE = "world.json"
FILES = ("model.safetensors", "config.json", "card.json")


def default_zoo_dir() -> Path:
    """``$INTERP_ZOO`` when set, else ``~/.cache/interp/zoo``."""
    env = os.environ.get(ZOO_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp" / "zoo"


def resolve_zoo_dir(zoo_dir: str | Path | None) -> Path:
    return Path(zoo_dir).expanduser() if zoo_dir is not None else default_zoo_dir()


def save_weights_atomic(path: Path, module: Any) -> None:
    """Save a module's weights as safetensors, atomically (see :mod:`interp.atomic`)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save(state))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _require_zoo(zoo: Path) -> None:
    if not (zoo / WORLD_FILE).is_file():
        raise SpecError(
            f"no organism zoo at {str(zoo)!r}: run `interp organism build` to build it "
            f"(or point {ZOO_ENV} at an existing zoo)"
        )


def available_organisms(zoo_dir: str | Path | None = None) -> list[str]:
    """Names of the complete models in a zoo (all three files present), sorted."""
    zoo = resolve_zoo_dir(zoo_dir)
    if not zoo.is_dir():
        return []
    return sorted(p.name for p in zoo.iterdir() if all((p / f).is_file() for f in FILES))


def load_world(zoo_dir: str | Path | None = None) -> tuple[World, WordTokenizer]:
    """The world and tokenizer a zoo was built on.

    Raises:
        SpecError: no zoo at that place.
    """
    zoo = resolve_zoo_dir(zoo_dir)
    _require_zoo(zoo)
    data = read_json(zoo / WORLD_FILE)
    return World.from_json(data["world"]), WordTokenizer(data["vocab"])


def read_card(name: str, zoo_dir: str | Path | None = None) -> dict[str, Any]:
    """The ``card.json`` of one model (see :func:`load_organism` for the errors)."""
    return read_json(_model_dir(name, resolve_zoo_dir(zoo_dir)) / "card.json")


def _model_dir(name: str, zoo: Path) -> Path:
    _require_zoo(zoo)
    names = available_organisms(zoo)
    if name not in names:
        raise SpecError(
            f"no organism {name!r} in the zoo at {str(zoo)!r}; available: {', '.join(names) or 'none'}"
        )
    return zoo / name


def load_organism(name: str, zoo_dir: str | Path | None = None) -> tuple[Any, WordTokenizer]:
    """Load a model of the zoo and its tokenizer.

    Args:
        name: the model's name (``base``, ``sft-answer``, ... see ``interp organism list``).
        zoo_dir: the zoo; defaults to ``$INTERP_ZOO``, else ``~/.cache/interp/zoo``.

    Returns:
        ``(HookedTransformer, WordTokenizer)``, the model in eval mode on the CPU.

    Raises:
        SpecError: the zoo does not exist (build it with ``interp organism build``) or has no
            model of that name (the message lists the available ones).

    Example:
        >>> load_organism("base", "/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.errors.SpecError: no organism zoo at '/nonexistent': run `interp organism build` ...
    """
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    zoo = resolve_zoo_dir(zoo_dir)
    folder = _model_dir(name, zoo)
    _, tok = load_world(zoo)
    cfg = read_json(folder / "config.json")
    model = HookedTransformer(HookedTransformerConfig(**cfg))
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return model.eval(), tok


PROMPT_SPLITS = (*SPLITS, *(f"{s}_answer" for s in SPLITS), "facts")


def organism_prompts(split: str, zoo_dir: str | Path | None = None) -> list[str]:
    """Prompt texts of a split of the zoo's world.

    Args:
        split: ``train``, ``test_id`` or ``test_ood`` (chain-of-thought prompts ``Q s g T``),
            the same with ``_answer`` (answer-only prompts ``Q s g A``), or ``facts``
            (``F n :``).
        zoo_dir: the zoo; defaults as in :func:`load_organism`.

    Returns:
        The prompts, in the split's order.

    Raises:
        SpecError: an unknown split (the message lists the valid ones) or no zoo.
    """
    if split not in PROMPT_SPLITS:
        raise SpecError(f"unknown organism prompt split {split!r}; valid: {', '.join(PROMPT_SPLITS)}")
    world, _ = load_world(zoo_dir)
    if split == "facts":
        return [fact_prompt(n) for n in range(world.n_nodes)]
    fmt = answer_prompt if split.endswith("_answer") else cot_prompt
    return [fmt(s, g) for s, g in world.split(split.removesuffix("_answer"))]
