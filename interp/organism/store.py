"""The zoo on disk: where it lives, atomic writes, and loading organisms, their world and prompts.

Layout of a zoo directory::

    world.json             the graph, the problem splits and the tokenizer vocabulary
    NAME/model.safetensors the weights
    NAME/config.json       HookedTransformerConfig keyword arguments (only those in CONFIG_KEYS)
    NAME/card.json         recipe, seed, fingerprint, build time and measured metrics
    NAME@STEPS/...         a dose of NAME: the same run saved after STEPS steps (same three files)

Loading trusts none of it: the config's keys are allow-listed and its sizes checked against the
safetensors header before any weight is allocated.
"""

import json
import os
import re
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
DOSE_SEP = "@"
_DOSE = re.compile(r"(?P<name>[^@/]+)@(?P<steps>[1-9][0-9]*)")

# The HookedTransformerConfig keywords the zoo builder writes (ModelShape.hooked_config). Any other
# key is refused: tokenizer_name with trust_remote_code, say, would make TransformerLens import
# code from a folder the config names.
CONFIG_KEYS = (
    "n_layers",
    "d_model",
    "n_heads",
    "d_head",
    "d_mlp",
    "n_ctx",
    "d_vocab",
    "act_fn",
    "normalization_type",
    "positional_embedding_type",
    "default_prepend_bos",
)
_SIZES = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab")
_CHOICES: dict[str, tuple[Any, ...]] = {
    "act_fn": ("gelu", "gelu_new", "relu", "silu"),
    "normalization_type": ("LN", "LNPre", "RMS", "RMSPre", None),
    "positional_embedding_type": ("standard", "rotary", "shortformer"),
    "default_prepend_bos": (False, True),
}


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


def _read_zoo_json(path: Path) -> dict[str, Any]:
    """A JSON object from the zoo, or a one-line :class:`SpecError` naming the file."""
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{str(path)!r} is not readable JSON ({exc}); rebuild the zoo") from None
    if not isinstance(data, dict):
        raise SpecError(f"{str(path)!r} holds a {type(data).__name__}; expected a JSON object")
    return data


def organism_config(path: Path) -> dict[str, Any]:
    """A model's ``config.json``, checked: known keys only, sizes positive ints, known choices.

    Raises:
        SpecError: unreadable, an unknown or missing key (the message names the accepted ones),
            or a bad value.
    """
    cfg = _read_zoo_json(path)
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise SpecError(
            f"{str(path)!r} has unknown keys {unknown}; refused (a zoo config runs no code). "
            f"Accepted keys: {', '.join(CONFIG_KEYS)}"
        )
    missing = [k for k in (*_SIZES, "act_fn") if k not in cfg]
    if missing:
        raise SpecError(f"{str(path)!r} lacks {missing}; a zoo config has {', '.join(CONFIG_KEYS)}")
    for k in _SIZES:
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"{str(path)!r}: {k}={v!r}; expected a positive int")
    for k, allowed in _CHOICES.items():
        if k in cfg and not any(type(cfg[k]) is type(a) and cfg[k] == a for a in allowed):
            raise SpecError(f"{str(path)!r}: {k}={cfg[k]!r}; expected one of {allowed}")
    return cfg


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error type, OSError or ValueError
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(
            f"{str(path)!r} is not a complete safetensors file (truncated or corrupt: {msg}); rebuild the zoo"
        ) from None


def _check_shapes(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], where: Path) -> None:
    """Refuse a config whose sizes disagree with the weights, before allocating anything."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    blocks = {k.split(".")[1] for k in shapes if k.startswith("blocks.")}
    if cfg["n_layers"] != len(blocks):
        raise SpecError(
            f"{str(where)!r}: n_layers={cfg['n_layers']} but model.safetensors holds {len(blocks)} blocks"
        )
    try:
        with torch.device("meta"):
            skeleton = HookedTransformer(HookedTransformerConfig(**cfg, device="meta"))
    except (ValueError, TypeError, AssertionError) as exc:  # TransformerLens checks with assert
        raise SpecError(f"{str(where)!r} is not a valid model config ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for k in sorted(set(expected) | set(shapes)):
        if expected.get(k) != shapes.get(k):
            raise SpecError(
                f"{str(where)!r} does not match model.safetensors: {k} has shape {shapes.get(k)} in "
                f"the weights but {expected.get(k)} by the config"
            )


def _require_zoo(zoo: Path) -> None:
    if not (zoo / WORLD_FILE).is_file():
        raise SpecError(
            f"no organism zoo at {str(zoo)!r}: run `interp organism build` to build it "
            f"(or point {ZOO_ENV} at an existing zoo)"
        )


def split_dose(name: str) -> tuple[str, int | None]:
    """``("sft-answer", 50)`` for ``sft-answer@50``, ``("base", None)`` for ``base``.

    Example:
        >>> split_dose("sft-answer@50"), split_dose("base"), split_dose("base@x")
        (('sft-answer', 50), ('base', None), ('base@x', None))
    """
    m = _DOSE.fullmatch(name)
    return (m["name"], int(m["steps"])) if m else (name, None)


def _sort_key(name: str) -> tuple[str, int]:
    base, dose = split_dose(name)
    return base, -1 if dose is None else dose


def available_organisms(zoo_dir: str | Path | None = None, doses: bool = True) -> list[str]:
    """Names of the complete models in a zoo (all three files present).

    Args:
        zoo_dir: the zoo; defaults as in :func:`load_organism`.
        doses: also list each saved dose (``sft-answer@50``), after its model.

    Returns:
        The names, sorted by model, each model's doses in step order.
    """
    zoo = resolve_zoo_dir(zoo_dir)
    if not zoo.is_dir():
        return []
    names = [p.name for p in zoo.iterdir() if all((p / f).is_file() for f in FILES)]
    if not doses:
        names = [n for n in names if split_dose(n)[1] is None]
    return sorted(names, key=_sort_key)


def available_doses(name: str, zoo_dir: str | Path | None = None) -> list[int]:
    """The steps at which model ``name`` is saved as a dose (``NAME@STEPS``), in order.

    Dose 0 (the parent) and the final model are not among them; see :func:`dose_axis`.
    """
    found = (split_dose(n) for n in available_organisms(zoo_dir))
    return sorted(d for base, d in found if base == name and d is not None)


def dose_axis(name: str, zoo_dir: str | Path | None = None) -> list[tuple[int, str]]:
    """``(steps, model name)`` along a fine-tune's dose axis: the parent at 0, each saved dose,
    then the final model at the steps its run took.

    Raises:
        SpecError: no zoo, or no model ``name`` (see :func:`load_organism`).

    Example:
        >>> dose_axis("sft-answer", "/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.errors.SpecError: no organism zoo at '/nonexistent': ...
    """
    if split_dose(name)[1] is not None:
        raise SpecError(f"{name!r} is a dose; give the model's own name ({split_dose(name)[0]!r})")
    card = read_card(name, zoo_dir)
    axis = [(0, card["parent"])] if card.get("parent") else []
    axis += [(d, f"{name}{DOSE_SEP}{d}") for d in available_doses(name, zoo_dir)]
    return axis + [(int(card["steps"]), name)]


def load_world(zoo_dir: str | Path | None = None) -> tuple[World, WordTokenizer]:
    """The world and tokenizer a zoo was built on.

    Raises:
        SpecError: no zoo at that place.
    """
    zoo = resolve_zoo_dir(zoo_dir)
    _require_zoo(zoo)
    data = _read_zoo_json(zoo / WORLD_FILE)
    try:
        return World.from_json(data["world"]), WordTokenizer(data["vocab"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SpecError(
            f"{str(zoo / WORLD_FILE)!r} is not a zoo world ({type(exc).__name__}: {exc}); rebuild the zoo"
        ) from None


def read_card(name: str, zoo_dir: str | Path | None = None) -> dict[str, Any]:
    """The ``card.json`` of one model (see :func:`load_organism` for the errors)."""
    return _read_zoo_json(_model_dir(name, resolve_zoo_dir(zoo_dir)) / "card.json")


def _model_dir(name: str, zoo: Path) -> Path:
    _require_zoo(zoo)
    names = available_organisms(zoo)
    if name in names:
        return zoo / name
    base, sep, dose = name.partition(DOSE_SEP)
    finals = [n for n in names if split_dose(n)[1] is None]
    if sep and base in finals:
        doses = ", ".join(f"{base}@{d}" for d in available_doses(base, zoo)) or "none"
        raise SpecError(
            f"no dose {dose!r} of organism {base!r} in the zoo at {str(zoo)!r}; doses on disk: {doses} "
            f"(dose 0 is its parent, the last dose is {base!r} itself)"
        )
    raise SpecError(
        f"no organism {name!r} in the zoo at {str(zoo)!r}; available: {', '.join(finals) or 'none'}"
        + (" (a dose is NAME@STEPS)" if len(finals) < len(names) else "")
    )


def load_organism(name: str, zoo_dir: str | Path | None = None) -> tuple[Any, WordTokenizer]:
    """Load a model of the zoo and its tokenizer.

    Args:
        name: the model's name (``base``, ``sft-answer``, ... see ``interp organism list``), or
            one of its doses, ``NAME@STEPS`` (``sft-answer@50``: the run after 50 steps).
        zoo_dir: the zoo; defaults to ``$INTERP_ZOO``, else ``~/.cache/interp/zoo``.

    Returns:
        ``(HookedTransformer, WordTokenizer)``, the model in eval mode on the CPU.

    Raises:
        SpecError: the zoo does not exist (build it with ``interp organism build``) or has no
            model of that name (the message lists the available ones) or no such dose (the
            message lists the doses on disk); its ``config.json`` has
            a key outside :data:`CONFIG_KEYS` or sizes that disagree with the weights; a file
            is truncated or corrupt.

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
    cfg = organism_config(folder / "config.json")
    _check_shapes(cfg, _weight_shapes(folder / "model.safetensors"), folder / "config.json")
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
