"""The steering vector: per-layer directions added to the residual stream, saved and applied.

A :class:`SteeringVector` holds one direction per hook point plus where it came from. Build one
by difference of means (CAA) over contrastive prompts or labelled cached positions, or by PCA of
paired differences (:mod:`steering.contrastive`), or from an SAE feature's decoder row
(:mod:`steering.sae_steering`); apply it with::

    with vec.apply(model, scale=4.0):
        model(tokens)

Model policy of :meth:`SteeringVector.apply`: a vector may be applied to any model whose
*architecture* (:func:`interp.architecture.architecture_of`: the Hugging Face ``model_type`` or
HookedTransformer settings, module class, layers, widths, heads and vocabulary hash) matches the
one it was built on, so that a vector from ``base`` can steer its fine-tuned twin; if the weight
fingerprint differs a warning is logged (once per pair of models). A model of another
architecture, or a hook whose width is not the vector's ``d_model``, is refused with
:class:`~interp.errors.ModelMismatchError`. Vector files saved before the full check record only
``class``, ``n_layers``, ``d_model`` and ``d_vocab`` (:data:`ARCH_KEYS`): those are compared, and
a warning says that the rest could not be.

With a key-value cache (``interp.generation`` / ``interp.organism.generate``) every forward pass
sees only the positions it computes: the prompt once, then one new token per step. ``positions``
select along the ``pos`` axis *of each pass*: ``None`` (the default) steers every prompt position
once and every generated token once, exactly as a full recomputation with the vector at all
positions would; ``-1`` steers the last prompt token and each generated token. Explicit prompt
indices (``[0, 3]``) are only meaningful for single forward passes, not for generation.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from interp.architecture import SUMMARY_KEYS, architecture_of, architecture_summary, compare_architectures
from interp.atomic import atomic_write_bytes, atomic_write_json
from interp.errors import HookNameError, ModelMismatchError, VectorFileError
from interp.fingerprint import sha256_file
from interp.hooks import Positions, add_vector, resolve_hook_names
from interp.results import format_table, save_figure

# The name the warnings of check_model were always logged under, before this module was split out.
log = logging.getLogger("steering.vectors")
_WARNED: set[tuple[str | None, str]] = set()  # (vector's model, target model) pairs already warned about
_WARNED_PARTIAL: set[tuple[str | None, str]] = set()  # the same, for vectors with a partial record

TENSORS_FILE = "vector.safetensors"
META_FILE = "vector.json"
ARCH_KEYS = SUMMARY_KEYS  # all the architecture vector files recorded before the full check


def model_meta(model) -> dict[str, Any]:
    """Spec, fingerprint and architecture (:func:`~interp.architecture.architecture_of`) of a model,
    as stored in a vector's metadata."""
    from interp.models import as_model

    m = as_model(model)
    d = m.describe()
    return {"spec": d["spec"], "fingerprint": d["fingerprint"], "architecture": architecture_of(m)}


@dataclass(frozen=True)
class SteeringVector:
    """One direction per hook point, with its provenance.

    Args:
        directions: hook name -> direction ``[d_model]`` (added as ``scale * direction``).
        meta: ``method``, ``d_model``, ``model`` (``spec``, ``fingerprint``, ``architecture``;
            ``None`` when unknown, e.g. an SAE direction given as a bare tensor) and
            ``provenance`` (prompt counts and hashes, cache ID, SAE feature).

    Example:
        >>> import torch
        >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
        >>> v.d_model, v.hook_names
        (4, ('blocks.0.hook_resid_post',))
    """

    directions: dict[str, Tensor]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.directions:
            raise ValueError("a steering vector needs at least one hook direction; got none")
        widths = {name: tuple(v.shape) for name, v in self.directions.items()}
        if any(len(s) != 1 for s in widths.values()) or len({s[0] for s in widths.values()}) != 1:
            raise ValueError(f"directions must all be 1-D of one width d_model; got shapes {widths}")

    @property
    def d_model(self) -> int:
        return int(next(iter(self.directions.values())).shape[0])

    @property
    def hook_names(self) -> tuple[str, ...]:
        return tuple(self.directions)

    def norms(self) -> dict[str, float]:
        return {name: float(v.float().norm()) for name, v in self.directions.items()}

    def select(self, layers: Sequence[int | str] | None) -> dict[str, Tensor]:
        """The directions of the given layers (ints) or hook names (``None``: all).

        Raises:
            HookNameError: (a ``KeyError``) a layer or name the vector has no direction for
                (lists those it has).
        """
        if layers is None:
            return dict(self.directions)
        out = {}
        for key in layers:
            if isinstance(key, int):
                names = [n for n in self.directions if n.startswith(f"blocks.{key}.")]
            else:
                names = [key] if key in self.directions else []
            if not names:
                raise HookNameError(
                    f"the vector has no direction for {key!r}; it has {list(self.directions)}"
                )
            out.update((n, self.directions[n]) for n in names)
        return out

    def check_model(self, model) -> None:
        """Apply the model policy (see the module docstring).

        Raises:
            ModelMismatchError: another architecture, or a hook of another width.
        """
        from interp.models import as_model

        m = as_model(model)
        if m.d_model != self.d_model:
            raise ModelMismatchError(
                f"steering vector has d_model {self.d_model}, the model {m.spec!r} has d_model {m.d_model}"
            )
        source = self.meta.get("model") or {}
        built = source.get("architecture")
        if not isinstance(built, dict):
            return
        here = architecture_of(m)
        diff = compare_architectures(built, here)
        if diff:
            raise ModelMismatchError(
                f"steering vector was built on {source.get('spec')!r} ({architecture_summary(built)}), "
                f"not on a model like {m.spec!r} ({architecture_summary(here)}): differs in "
                f"{'; '.join(diff)} (vector vs model)"
            )
        pair = (source.get("fingerprint"), m.fingerprint)
        if "model_type" not in built and pair not in _WARNED_PARTIAL:
            _WARNED_PARTIAL.add(pair)
            log.warning(
                "steering vector from %s records only %s of its model's architecture (saved before "
                "the full architecture check, or built from a cache that records no more): model "
                "type and vocabulary not compared",
                source.get("spec"),
                ", ".join(sorted(built)),
            )
        if pair[0] != pair[1] and pair not in _WARNED:
            _WARNED.add(pair)  # once per (source, target) pair: a sweep applies the vector many times
            log.warning(
                "steering vector from %s (%s) applied to %s (%s): same architecture, other weights",
                source.get("spec"),
                source.get("fingerprint"),
                m.spec,
                m.fingerprint,
            )

    @contextmanager
    def apply(
        self,
        model,
        scale: float = 1.0,
        positions: Positions = None,
        layers: Sequence[int | str] | None = None,
    ) -> Iterator[None]:
        """Add ``scale * direction`` at each hook during the forward passes in the body.

        Args:
            model: a :class:`interp.models.Model` or TransformerLens module.
            scale: multiplier of every direction.
            positions: where to add, along the ``pos`` axis of each forward pass (see the module
                docstring for generation with a key-value cache); ``None``: everywhere.
            layers: restrict to these layer indices or hook names (``None``: all of the vector's).

        Raises:
            ModelMismatchError: see :meth:`check_model`.
            HookNameError: the model lacks one of the hooks, or two of the vector's hooks are
                names of one hook point (nothing is registered then).

        Example:
            >>> import torch
            >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
            >>> cfg = HookedTransformerConfig(
            ...     n_layers=1, d_model=4, n_ctx=4, d_head=2, d_vocab=5, act_fn="relu")
            >>> m = HookedTransformer(cfg)
            >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
            >>> with v.apply(m, scale=2.0):
            ...     logits = m(torch.tensor([[1, 2]]))
            >>> sum(len(h._forward_hooks) for h in m.hook_dict.values())
            0
        """
        self.check_model(model)
        chosen = self.select(layers)
        resolved = resolve_hook_names(model, list(chosen))  # every name checked before registering
        if len(resolved) < len(chosen):
            aliases = [n for n in chosen if n not in resolved]
            spec = getattr(model, "spec", type(model).__name__)
            raise HookNameError(
                f"the steering vector's directions at {aliases} are at hook points it already "
                f"steers under other names (of {resolved}) on {spec!r}; keep one direction per hook point"
            )
        with ExitStack() as stack:
            for name, direction in chosen.items():
                stack.enter_context(add_vector(model, name, direction, scale=scale, positions=positions))
            yield

    def to_dict(self) -> dict[str, Any]:
        return {
            "hooks": list(self.directions),
            "norms": self.norms(),
            "d_model": self.d_model,
            "meta": self.meta,
        }

    def __str__(self) -> str:
        rows = [[name, float(v.float().norm())] for name, v in self.directions.items()]
        head = f"steering vector ({self.meta.get('method', '?')}, d_model {self.d_model})"
        return head + "\n" + format_table(["hook", "norm"], rows)

    def save(self, path: str | Path) -> Path:
        """Write ``vector.safetensors`` then ``vector.json`` (with its checksum) into a directory.

        Both writes are atomic; the JSON, written last, names the tensors file's sha256, so a
        directory whose JSON exists holds a complete vector.

        Raises:
            VectorFileError: the directory cannot be created (a file is in the way, no permission).
        """
        from safetensors.torch import save

        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only parent
            reason = exc.strerror or exc
            raise VectorFileError(f"cannot save the steering vector in {str(path)!r}: {reason}") from None
        tensors = {n: v.detach().float().cpu().contiguous() for n, v in self.directions.items()}
        atomic_write_bytes(path / TENSORS_FILE, save(tensors))
        atomic_write_json(path / META_FILE, {**self.to_dict(), "sha256": sha256_file(path / TENSORS_FILE)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        """Load a vector saved with :meth:`save`.

        Raises:
            VectorFileError: a missing directory or file, a checksum mismatch, or unreadable or
                ill-formed contents (``vector.json`` is checked field by field).
        """
        import json

        from safetensors.torch import load_file

        path = Path(path)
        meta_path, tensor_path = path / META_FILE, path / TENSORS_FILE
        for p in (meta_path, tensor_path):
            if not p.is_file():
                raise VectorFileError(f"no steering vector at {str(path)!r}: {p.name} is missing")
        try:
            info = json.loads(meta_path.read_text(encoding="utf-8"))
            hooks, expected = info["hooks"], info["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise VectorFileError(f"{str(meta_path)!r} is not a steering-vector file ({exc})") from None
        meta = info.get("meta", {})
        problem = _meta_problem(hooks, expected, meta)
        if problem:
            raise VectorFileError(f"{str(meta_path)!r} is not a steering-vector file: {problem}")
        if sha256_file(tensor_path) != expected:
            raise VectorFileError(
                f"{str(tensor_path)!r} is corrupt: its sha256 differs from the one in {META_FILE}"
            )
        try:
            tensors = load_file(str(tensor_path))
        except Exception as exc:  # safetensors raises its own error types
            raise VectorFileError(f"cannot read {str(tensor_path)!r}: {exc}") from None
        missing = [h for h in hooks if h not in tensors]
        if missing:
            raise VectorFileError(f"{str(tensor_path)!r} lacks the directions for {missing}")
        try:
            return cls({h: tensors[h] for h in hooks}, meta)
        except ValueError as exc:
            raise VectorFileError(f"{str(tensor_path)!r} holds no valid steering vector: {exc}") from None

    def plot(self, path_or_ax=None):
        """Bar chart of the direction norms per hook; a path saves a PNG and returns it."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "bar") else plt.subplots(figsize=(6, 3))[1]
        names = list(self.directions)
        ax.bar(range(len(names)), list(self.norms().values()))
        ax.set_xticks(range(len(names)), [n.replace(".hook_", "\n") for n in names], fontsize=7)
        ax.set_ylabel("direction norm")
        ax.set_title(f"steering vector ({self.meta.get('method', '?')})")
        if path_or_ax is None or hasattr(path_or_ax, "bar"):
            return ax
        return save_figure(ax.figure, path_or_ax)


def _meta_problem(hooks: Any, sha256: Any, meta: Any) -> str | None:
    """What is wrong with the fields of a ``vector.json``, or None."""
    if not isinstance(hooks, list) or not hooks or not all(isinstance(h, str) for h in hooks):
        return f"'hooks' must be a non-empty list of hook names, not {hooks!r}"
    if not isinstance(sha256, str):
        return f"'sha256' must be a string, not {sha256!r}"
    if not isinstance(meta, dict):
        return f"'meta' must be an object, not {type(meta).__name__}"
    model = meta.get("model")
    if model is None:
        return None
    if not isinstance(model, dict):
        return f"'meta.model' must be an object or null, not {type(model).__name__}"
    if not isinstance(model.get("architecture", {}), dict | None):
        return f"'meta.model.architecture' must be an object, not {model['architecture']!r}"
    return None


def layer_hooks(layers: Sequence[int], site: str = "hook_resid_post") -> list[str]:
    """Hook names of a residual site at the given layers.

    Example:
        >>> layer_hooks([0, 2])
        ['blocks.0.hook_resid_post', 'blocks.2.hook_resid_post']
    """
    return [f"blocks.{int(i)}.{site}" for i in layers]


def random_direction(d_model: int, norm: float, seed: int = 0, dtype: Any = None) -> Tensor:
    """A seeded Gaussian direction of length ``norm``: the control a steering vector must beat
    (the same norm at the same hook, positions and scale, but no behaviour in it).

    Drawn in ``dtype`` (default float32) with its own generator, so a seed gives the same control
    everywhere.

    Example:
        >>> round(float(random_direction(8, 3.0, seed=0).norm()), 4)
        3.0
    """
    import torch

    v = torch.randn(d_model, generator=torch.Generator().manual_seed(seed), dtype=dtype or torch.float32)
    return v * (norm / v.norm())
