"""SAEs on disk and on cached activations: save, load, check the fit, encode.

An SAE is kept in sae-lens's on-disk format (``cfg.json`` + ``sae_weights.safetensors``), so
``sae_lens.SAE.load_from_disk`` opens it; where it came from (cache ID, model fingerprint, hook,
and the model's architecture, :func:`interp.architecture.architecture_of`) rides in
``cfg.json``'s ``metadata``, which sae-lens keeps as it is.

Model policy of :func:`check_sae_fits`, as for steering vectors: an SAE may read a cache of any
model with the architecture it was trained on (a base model's SAE on its fine-tune's cache),
with a warning when the weights differ; another architecture, another hook or another input
size is refused with :class:`~interp.errors.SAEError` naming both sides.

Attention sinks: in a real language model the first position (and any BOS token) carries a
residual norm a hundred times the others (SmolLM2-135M: ~25,000 against ~171), so it holds
nearly all of the variance; an SAE trained or evaluated on it reports an explained variance of
1.0 that says nothing about the real tokens. :class:`SinkExclusion` names the cached positions an
SAE never sees (position 0 of every row and any BOS token, by default); training records it in
the SAE's metadata (:data:`EXCLUSION_KEY`) and evaluation and feature contexts follow it.
"""

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.architecture import architecture_of_cache, architecture_summary, compare_architectures
from interp.atomic import fsync_dir
from interp.cache import Cache, open_cache
from interp.errors import SAEError

# The name these warnings were always logged under, before this module was split out of it.
log = logging.getLogger("steering.sae")

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
ARCHITECTURE_KEY = "interp_architecture"  # in cfg.json's metadata: architecture_of the SAE's model
EXCLUSION_KEY = "interp_excluded"  # in cfg.json's metadata: SinkExclusion.to_dict() of training
NORMALIZATION_KEY = "interp_normalization"  # in cfg.json's metadata: how inputs were scaled
_WARNED: set[tuple[str, str]] = set()  # (SAE's model, cache's model) fingerprint pairs warned about


def _as_cache(cache: "Cache | str | Path") -> Cache:
    return cache if isinstance(cache, Cache) else open_cache(cache)


def _cache_d_in(cache: Cache, hook: str) -> int:
    """Size of one activation at ``hook`` (trailing axes flattened); HookNameError if absent."""
    return math.prod(cache[hook].shape[1:])


def _flat(x: Tensor) -> Tensor:
    return x.reshape(len(x), -1).float()


@dataclass(frozen=True)
class SinkExclusion:
    """The cached positions an SAE is neither trained nor evaluated on (attention sinks).

    Args:
        positions: positions within each row to leave out (``0``: the first token of every row).
        bos: also leave out every position holding the BOS token, as the cache's manifest records
            it (``tokenizer.bos_token_id``; nothing when it records none).

    Raises:
        ValueError: a position that is not a non-negative int, naming it.

    Example:
        >>> SinkExclusion().describe(bos_token_id=1)
        'real tokens only (excluded: position 0, BOS token 1)'
        >>> SinkExclusion(positions=(), bos=False).describe()
        'all positions'
    """

    positions: tuple[int, ...] | list[int] = (0,)
    bos: bool = True

    def __post_init__(self) -> None:
        bad = [p for p in self.positions if not isinstance(p, int) or isinstance(p, bool) or p < 0]
        if bad:
            raise ValueError(
                f"exclude_positions {list(self.positions)!r} holds {bad[0]!r}; expected "
                "non-negative positions within a row, like (0,) or ()"
            )
        object.__setattr__(self, "positions", tuple(sorted(set(self.positions))))

    @property
    def excludes_anything(self) -> bool:
        return bool(self.positions) or self.bos

    @staticmethod
    def bos_token_id(cache: Cache) -> int | None:
        """The BOS token id the cache's manifest records (``None`` for older caches or no BOS)."""
        bos = cache.manifest.get("tokenizer", {}).get("bos_token_id")
        return bos if isinstance(bos, int) and not isinstance(bos, bool) else None

    def keep_mask(self, cache: Cache) -> Bool[Tensor, "n"]:  # noqa: F821
        """``True`` at every cached position the SAE sees, in cache order."""
        positions = cache.positions
        keep = torch.ones(len(positions), dtype=torch.bool)
        if self.positions:
            keep &= ~torch.isin(positions.long(), torch.tensor(self.positions, dtype=torch.long))
        bos = self.bos_token_id(cache) if self.bos else None
        if bos is not None:
            keep &= cache.tokens != bos
        return keep

    def describe(self, bos_token_id: int | None = None) -> str:
        """One phrase for a report table: which positions the numbers are over."""
        parts = []
        if self.positions:
            plural = "s" if len(self.positions) > 1 else ""
            parts.append(f"position{plural} {', '.join(map(str, self.positions))}")
        if self.bos and bos_token_id is not None:
            parts.append(f"BOS token {bos_token_id}")
        return f"real tokens only (excluded: {', '.join(parts)})" if parts else "all positions"

    def to_dict(
        self, cache: Cache | None = None, keep: Bool[Tensor, "n"] | None = None  # noqa: F821
    ) -> dict[str, Any]:
        """The record kept in an SAE's metadata; given the cache, with its BOS id and counts.

        ``keep`` is this exclusion's :meth:`keep_mask` of the cache, if already computed.
        """
        out: dict[str, Any] = {"positions": list(self.positions), "bos": self.bos}
        if cache is not None:
            keep = self.keep_mask(cache) if keep is None else keep
            out.update(
                bos_token_id=self.bos_token_id(cache),
                n_kept=int(keep.sum()),
                n_excluded=int((~keep).sum()),
            )
        return out

    @classmethod
    def of_sae(cls, sae) -> "SinkExclusion":
        """What the SAE was trained without (its metadata), else the default.

        An SAE trained before exclusions were recorded gets the default: its numbers are then
        reported on real tokens, which is what a reader of them expects.
        """
        meta = getattr(getattr(sae, "cfg", None), "metadata", None)
        record = meta.get(EXCLUSION_KEY) if meta is not None else None
        if not isinstance(record, dict):
            return cls()
        try:
            return cls(positions=tuple(record.get("positions", (0,))), bos=bool(record.get("bos", True)))
        except (TypeError, ValueError) as exc:
            raise SAEError(f"the SAE's metadata.{EXCLUSION_KEY} = {record!r} is malformed ({exc})") from None


def kept_batches(
    cache: Cache,
    hook: str,
    batch_size: int,
    keep: Bool[Tensor, "n"] | None = None,  # noqa: F821
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> Iterator[Tensor]:
    """:meth:`Cache.batches` over only the positions where ``keep`` is true.

    Reads one shard at a time (shards in a seeded order and positions permuted within each
    shard when shuffling), so memory stays bounded by one shard. ``keep=None`` is exactly
    ``cache.batches``.
    """
    if keep is None:
        yield from cache.batches(hook, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    acts = cache[hook]
    if len(keep) != len(acts):
        raise ValueError(f"keep mask of {len(keep)} positions for {len(acts)} cached positions")
    starts = [0]
    for shard in acts.shards:
        starts.append(starts[-1] + len(shard))
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(acts.shards), generator=gen).tolist() if shuffle else range(len(acts.shards))
    carry: Tensor | None = None
    for s in order:
        idx = keep[starts[s] : starts[s + 1]].nonzero().squeeze(1)
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=gen)]
        if not len(idx):
            continue
        acts.touch(s)
        block = acts.shards[s][idx]
        if carry is not None:
            block = torch.cat([carry, block])
        n_full = len(block) // batch_size * batch_size
        for i in range(0, n_full, batch_size):
            yield block[i : i + batch_size]
        carry = block[n_full:]
    if carry is not None and len(carry) and not drop_last:
        yield carry


def save_sae(sae, path: str | Path) -> Path:
    """Save an sae-lens SAE in sae-lens's format (``cfg.json``, ``sae_weights.safetensors``).

    Each file is written under a temporary name and renamed, the config last, so a killed save
    never leaves a config beside half-written weights.

    Args:
        sae: an ``sae_lens.SAE``.
        path: the directory (created).

    Returns:
        The directory.

    Raises:
        SAEError: the directory cannot be created (a file is in the way, no permission).

    Example:
        >>> import tempfile
        >>> from sae_lens import SAE, StandardSAE, StandardSAEConfig
        >>> sae = StandardSAE(StandardSAEConfig(d_in=4, d_sae=8))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     SAE.load_from_disk(str(save_sae(sae, tmp))).cfg.d_sae
        8
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only parent
        raise SAEError(f"cannot save the SAE in {str(path)!r}: {exc.strerror or exc}") from None
    with tempfile.TemporaryDirectory(dir=path, prefix=".saving-") as tmp:
        sae.save_model(tmp)
        for name in (WEIGHTS_FILE, CFG_FILE):
            with open(Path(tmp) / name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(Path(tmp) / name, path / name)
    fsync_dir(path)
    return path


def load_sae(path: str | Path, device: str = "cpu"):
    """Load an SAE saved by :func:`save_sae` or by sae-lens itself.

    Args:
        path: the directory holding ``cfg.json`` and ``sae_weights.safetensors``.
        device: where to put it.

    Returns:
        An ``sae_lens.SAE``.

    Raises:
        SAEError: the directory or a file is missing, a file cannot be read, or ``cfg.json``'s
            sizes disagree with the weights (checked on the file headers before anything is
            allocated).

    Example:
        >>> load_sae("/nonexistent")
        Traceback (most recent call last):
        ...
        interp.errors.SAEError: '/nonexistent' is not an SAE directory: cfg.json is missing
    """
    path = Path(path)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise SAEError(f"{str(path)!r} is not an SAE directory: {name} is missing")
    _check_files(path)
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(path), device=device)
    except Exception as exc:  # json, safetensors and state-dict errors all mean a bad file
        reason = f"{type(exc).__name__}: {_one_line(exc)}"
        raise SAEError(f"cannot load the SAE in {str(path)!r}: {reason}") from exc


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_files(path: Path) -> None:
    """Check cfg.json's sizes against the weights' header before sae-lens builds anything from them."""
    from safetensors import safe_open

    where = f"cannot load the SAE in {str(path)!r}:"
    try:
        cfg = json.loads((path / CFG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SAEError(f"{where} {CFG_FILE} is not readable JSON ({_one_line(exc)})") from None
    if not isinstance(cfg, dict):
        raise SAEError(f"{where} {CFG_FILE} holds a {type(cfg).__name__}, not an SAE config object")
    sizes = {k: cfg.get(k) for k in ("d_in", "d_sae")}
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:
        raise SAEError(f"{where} {CFG_FILE} has {bad}; d_in and d_sae must be positive integers")
    meta = cfg.get("metadata", {})
    if not isinstance(meta, dict):
        raise SAEError(f"{where} {CFG_FILE} has a metadata field that is not an object")
    checked = (
        ("hook_name", str, "a hook name"),
        (ARCHITECTURE_KEY, dict, "an object"),
        (EXCLUSION_KEY, dict, "an object"),
        (NORMALIZATION_KEY, dict, "an object"),
    )
    for key, kind, name in checked:
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise SAEError(f"{where} {CFG_FILE} has metadata.{key} = {meta[key]!r}; expected {name}")
    import sae_lens  # noqa: F401 (importing it registers its SAE architectures)
    from sae_lens.registry import SAE_CLASS_REGISTRY

    if "architecture" in cfg and cfg["architecture"] not in SAE_CLASS_REGISTRY:
        raise SAEError(
            f"{where} {CFG_FILE} names architecture {cfg['architecture']!r}; sae-lens knows "
            f"{sorted(SAE_CLASS_REGISTRY)}"
        )
    try:
        with safe_open(str(path / WEIGHTS_FILE), framework="pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # header only
    except Exception as exc:  # safetensors raises its own error types
        reason = _one_line(exc)
        raise SAEError(f"{where} {WEIGHTS_FILE} is not a readable safetensors file ({reason})") from None
    want = {"W_enc": [sizes["d_in"], sizes["d_sae"]], "W_dec": [sizes["d_sae"], sizes["d_in"]]}
    for name, shape in want.items():
        if name in shapes and shapes[name] != shape:
            raise SAEError(
                f"{where} {CFG_FILE} says d_in={sizes['d_in']}, d_sae={sizes['d_sae']}, but "
                f"{WEIGHTS_FILE} holds {name} of shape {shapes[name]}"
            )


def check_sae_fits(sae, cache: "Cache | str | Path", hook: str, model=None) -> None:
    """Refuse an SAE that does not fit the cache's activations at ``hook`` (see the module docstring).

    Args:
        sae: an ``sae_lens.SAE``.
        cache: an opened cache or its directory.
        hook: the hook the SAE is to read.
        model: the cache's own model, if loaded (checked against the cache's fingerprint): its
            full architecture is compared when the manifest records only the sizes.

    Raises:
        CacheError: no cache at that path.
        ModelMismatchError: ``model`` is not the cache's model.
        HookNameError: the cache lacks ``hook``.
        SAEError: the SAE was trained on a model of another architecture, or on another hook,
            or its ``d_in`` differs.

    Example:
        >>> check_sae_fits(None, "/nonexistent", "blocks.0.hook_resid_post")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    meta = sae.cfg.metadata
    trained = meta.get(ARCHITECTURE_KEY)
    if isinstance(trained, dict):
        here = architecture_of_cache(cache, model)
        diff = compare_architectures(trained, here)
        if diff:
            raise SAEError(
                f"the SAE was trained on {meta.get('model_name')!r} ({architecture_summary(trained)}), "
                f"but cache {str(cache.root)!r} holds {cache.manifest['model']['spec']!r} "
                f"({architecture_summary(here)}): differs in {'; '.join(diff)} (SAE vs cache)"
            )
    trained_on = meta.get("hook_name")
    if trained_on not in (None, hook):
        raise SAEError(
            f"the SAE was trained on hook {trained_on!r}, not on {hook!r}; use it at {trained_on!r}"
        )
    d_in = _cache_d_in(cache, hook)
    if int(sae.cfg.d_in) != d_in:
        raise SAEError(
            f"the SAE takes inputs of size d_in={sae.cfg.d_in}, but {hook!r} in cache "
            f"{str(cache.root)!r} has activations of size {d_in}"
        )
    pair = (meta.get("interp_model_fingerprint"), cache.model_fingerprint)
    if pair[0] is not None and pair[0] != pair[1] and pair not in _WARNED:
        _WARNED.add(pair)  # once per pair: a paired-cache comparison checks every side
        log.warning(
            "SAE trained on %s (%s) applied to a cache of %s (%s): same architecture, other weights",
            meta.get("model_name"),
            pair[0],
            cache.manifest["model"]["spec"],
            pair[1],
        )


def encode(sae, acts: Float[Tensor, "batch ..."]) -> Float[Tensor, "batch d_sae"]:
    """Feature activations of a batch of cached activations (trailing axes flattened), no grad.

    Args:
        sae: an ``sae_lens.SAE``.
        acts: activations as read from a cache, any dtype.

    Returns:
        ``sae.encode`` of them as float32 on the SAE's device.

    Example:
        >>> from types import SimpleNamespace
        >>> double = SimpleNamespace(device="cpu", encode=lambda x: 2 * x)
        >>> encode(double, torch.ones(2, 1, 3, dtype=torch.bfloat16)).shape
        torch.Size([2, 3])
    """
    with torch.no_grad():
        return sae.encode(_flat(acts).to(sae.device))
