"""Where a model's modules sit: a default device, or a ``device_map`` over several devices.

A ``device_map`` (a strategy such as ``"auto"``, one device, or module name -> device) and
``max_memory`` (device -> size) are checked here before anything loads
(:func:`check_placement`), worked out on an empty copy of the model with accelerate's own
algorithm (:meth:`Placement.resolve`, so every refusal comes before the weights are read) and
applied to the loaded model (:meth:`Placement.dispatch`). Offload to disk or to the meta device
is refused: the TransformerLens bridge computes from the weights that offload leaves behind.
"""

import difflib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp.errors import PlacementError, SpecError


def default_device(device: str | torch.device | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=device)  # parses the name and reaches the device, allocating nothing
    except (RuntimeError, AssertionError, ValueError) as exc:
        usable = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            usable.append("mps")
        raise SpecError(
            f"device {str(device)!r} is not usable here ({first_line(exc)}); usable: {', '.join(usable)}"
        ) from None
    return str(device)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
DEVICE_MAP_ACCEPTED = (
    "'auto', 'balanced', 'balanced_low_0', 'sequential', one device ('cpu', 'cuda:0', a GPU index) "
    "or a dict from Hugging Face module name to device"
)
_NO_OFFLOAD = (
    "offload is refused: the TransformerLens bridge computes from weights that offload leaves on "
    "the meta device"
)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

_DEFAULT_PLACEMENT: ContextVar[tuple | None] = ContextVar("interp_default_placement", default=None)


@contextmanager
def default_placement(device_map: Any = None, max_memory: Any = None) -> Iterator[None]:
    """Every :func:`load_model` of a spec string in the body that is given no ``device_map`` or
    ``max_memory`` of its own loads with these, in place of any ``device`` it names.

    The command line runs each subcommand in it with ``--device-map`` / ``--max-memory``, so a
    subcommand that calls ``load_model(spec, device=..., dtype=...)`` honours them unchanged.
    """
    token = _DEFAULT_PLACEMENT.set(
        None if device_map is None and max_memory is None else (device_map, max_memory)
    )
    try:
        yield
    finally:
        _DEFAULT_PLACEMENT.reset(token)


def placement_in_force() -> tuple | None:
    """``(device_map, max_memory)`` of the innermost :func:`default_placement`, else ``None``."""
    return _DEFAULT_PLACEMENT.get()


@dataclass(frozen=True)
class Placement:
    """A checked ``device_map`` (a strategy name, or module -> ``"cpu"`` / ``"mps"`` / GPU index)
    and ``max_memory`` (device -> bytes), as :func:`check_placement` returns them."""

    device_map: str | dict[str, str | int]
    max_memory: dict[str | int, int] | None = None

    def resolve(self, config: Any, dtype: torch.dtype, spec: str, trust: bool) -> dict[str, str | int]:
        """Module -> device for this model, worked out on an empty (meta) copy; offload refused."""
        from accelerate.utils import get_balanced_memory, get_max_memory, infer_auto_device_map
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
        if isinstance(self.device_map, str):  # a strategy: what from_pretrained would choose
            no_split = sorted(getattr(skeleton, "_no_split_modules", None) or ())
            if self.device_map == "sequential":
                budget = get_max_memory(self.max_memory)
            else:
                budget = get_balanced_memory(
                    skeleton,
                    self.max_memory,
                    no_split,
                    dtype=dtype,
                    low_zero=self.device_map == "balanced_low_0",
                )
            where = dict(
                infer_auto_device_map(
                    skeleton, max_memory=budget, no_split_module_classes=no_split, dtype=dtype
                )
            )
        else:
            where = dict(self.device_map)
            _check_covers(skeleton, where, spec)
        self._refuse_offload(where, spec)
        return where

    def dispatch(self, model: nn.Module, where: dict[str, str | int], spec: str) -> nn.Module:
        """Move each module of ``model`` (loaded on the CPU) to its device in ``where``."""
        from accelerate import dispatch_model

        try:
            return dispatch_model(model, device_map=where)
        except (ValueError, RuntimeError) as exc:  # a device out of memory, a map accelerate refuses
            raise PlacementError(
                f"{spec!r}: device_map {short_repr(self.device_map)} could not be applied ({first_line(exc)})"
            ) from None

    def _refuse_offload(self, where: dict[str, str | int], spec: str) -> None:
        what = f"device_map {short_repr(self.device_map)}"
        if self.max_memory is not None:
            what += f" with max_memory {short_repr(self.max_memory)}"
        off = [m for m, d in where.items() if d in ("disk", "meta")]
        if off:
            raise PlacementError(
                f"{spec!r}: {what} would offload {len(off)} module(s) to {where[off[0]]!r} "
                f"(e.g. {off[0] or 'the whole model'!r}); {_NO_OFFLOAD}; give the devices more "
                "max_memory, or more devices"
            )
        devices = set(where.values())
        if "cpu" in devices and len(devices) > 1:
            cpu = [m for m, d in where.items() if d == "cpu"]
            others = ", ".join(sorted(map(str, devices - {"cpu"})))
            raise PlacementError(
                f"{spec!r}: {what} puts {len(cpu)} module(s) on the CPU (e.g. {cpu[0]!r}) next to "
                f"{others}, which accelerate runs as CPU offload; {_NO_OFFLOAD}; place the model on "
                "accelerators only, or on the CPU only"
            )


def check_placement(
    device_map: Any, max_memory: Any, device: Any = None, spec: str = "the model"
) -> Placement:
    """Check a ``device_map`` and ``max_memory`` before anything loads (see :func:`load_model`).

    Raises:
        PlacementError: a value that is not a strategy, device or dict; a device not usable
            here; an offload target (``disk``, ``meta``); ``max_memory`` without a strategy;
            ``device`` given too.

    Example:
        >>> check_placement("auto", {"cpu": "1GiB"})
        Placement(device_map='auto', max_memory={'cpu': 1073741824})
        >>> check_placement("autoo", None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.errors.PlacementError: device_map 'autoo' is not a device or strategy; expected 'auto', ...
    """
    if device_map is None:
        raise PlacementError(
            f"max_memory {short_repr(max_memory)} for {spec!r} without a device_map; max_memory budgets "
            f"the device_map strategies {', '.join(DEVICE_MAP_STRATEGIES)}: add device_map='auto'"
        )
    if device is not None:
        raise PlacementError(
            f"device {str(device)!r} and device_map {short_repr(device_map)} both given for {spec!r}; "
            "give one: a device_map places every module itself"
        )
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        where: str | dict[str, str | int] = device_map
    elif isinstance(device_map, Mapping):
        if not device_map:
            raise PlacementError(
                f"device_map {{}} for {spec!r} places nothing; expected {DEVICE_MAP_ACCEPTED}"
            )
        where = {}
        for module, value in device_map.items():
            if not isinstance(module, str):
                raise PlacementError(
                    f"device_map key {module!r} is not a module name; expected names like "
                    "'model.layers.0' (or '' for the whole model)"
                )
            where[module] = _placement_device(value, f"device_map[{module!r}]")
    else:
        where = {"": _placement_device(device_map, "device_map")}
    if max_memory is not None and not isinstance(where, str):
        raise PlacementError(
            f"max_memory {short_repr(max_memory)} with device_map {short_repr(device_map)}: a device or dict "
            f"places the modules itself; max_memory budgets only {', '.join(DEVICE_MAP_STRATEGIES)}"
        )
    return Placement(where, None if max_memory is None else check_max_memory(max_memory))


def _placement_device(value: Any, where: str) -> str | int:
    """``"cpu"``, ``"mps"`` or a GPU index (accelerate's spelling), checked usable here."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, str) and value.strip().lower() == "disk":
        raise PlacementError(f"{where} {value!r}: {_NO_OFFLOAD}; expected a device such as 'cpu' or 'cuda:0'")
    try:
        if isinstance(value, bool) or not isinstance(value, int | str | torch.device):
            raise TypeError
        dev = torch.device("cuda", value) if isinstance(value, int) else torch.device(value)
    except (TypeError, RuntimeError, ValueError):
        raise PlacementError(
            f"{where} {short_repr(value)} is not a device or strategy; expected {DEVICE_MAP_ACCEPTED}"
        ) from None
    if dev.type == "meta":
        raise PlacementError(
            f"{where} {short_repr(value)}: {_NO_OFFLOAD}; expected a device such as 'cpu' or 'cuda:0'"
        )
    try:
        default_device(dev)
    except SpecError as exc:
        raise PlacementError(f"{where} {short_repr(value)}: {exc}") from None
    if dev.type == "cuda":
        return dev.index if dev.index is not None else torch.cuda.current_device()
    return dev.type if dev.index is None else str(dev)


def check_max_memory(max_memory: Any) -> dict[str | int, int]:
    """``max_memory`` with accelerate's device keys (``"cpu"``, ``"mps"``, GPU index) and byte sizes.

    Raises:
        PlacementError: not a non-empty dict, a device not usable here or ``disk``, a bad size.

    Example:
        >>> check_max_memory({"cpu": "2GiB"})
        {'cpu': 2147483648}
    """
    if not isinstance(max_memory, Mapping) or not max_memory:
        raise PlacementError(
            f"max_memory {short_repr(max_memory)} is not a dict from device to size; expected e.g. "
            "{'cpu': '2GiB', 'cuda:0': '40GiB'}"
        )
    out: dict[str | int, int] = {}
    for key, size in max_memory.items():
        device = _placement_device(key, "max_memory device")
        out[device] = _size(size, key)
    return out


def _size(size: Any, key: Any) -> int:
    """Bytes from an integer or ``"2GiB"`` / ``"500MB"`` (powers of 1024 with ``i``, of 1000 without)."""
    n = None
    if isinstance(size, int) and not isinstance(size, bool):
        n = size
    elif isinstance(size, str) and (m := _SIZE.fullmatch(size.strip())):
        n = int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    if n is None or n <= 0:
        raise PlacementError(
            f"max_memory[{key!r}] {size!r} is not a size; expected bytes (an integer > 0) or a "
            "number and unit like '2GiB' or '500MB'"
        )
    return n


def _check_covers(skeleton: nn.Module, where: dict[str, str | int], spec: str) -> None:
    """Every module a dict names exists, and every weight falls under one of them."""
    modules = [name for name, _ in skeleton.named_modules() if name]
    unknown = [k for k in where if k and k not in set(modules)]
    if unknown:
        close = difflib.get_close_matches(unknown[0], modules, n=3, cutoff=0.5)
        hint = f"close ones: {', '.join(close)}" if close else f"e.g. {', '.join(modules[:3])}"
        raise PlacementError(
            f"{spec!r}: device_map names {unknown[0]!r}, which is not a module of this model "
            f"(Hugging Face module names; {hint})"
        )
    prefixes = tuple(k + "." for k in where if k)
    if "" not in where:
        missing = [n for n in skeleton.state_dict() if n not in where and not n.startswith(prefixes)]
        if missing:
            raise PlacementError(
                f"{spec!r}: device_map gives no device to {len(missing)} weight(s) (e.g. "
                f"{missing[0]!r}); map every module, or '' (the whole model) to one device"
            )


def short_repr(value: Any, width: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
