"""Lazy package exports: a package names what it exports and where, and pays for an import only
when a name is first used (PEP 562 module ``__getattr__``)."""

from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` resolving ``exports`` (name -> defining module).

    Use in a package's ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``.

    Args:
        package: the package's ``__name__`` (named in the error for an unknown attribute).
        exports: each exported name and the module that defines it.
    """

    def __getattr__(name: str) -> object:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
