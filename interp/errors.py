"""Errors the toolkit raises on bad user input.

The command line turns every :class:`InterpError` into a one-line message on stderr and a
non-zero exit, without a traceback; library callers can catch the specific subclasses.
"""


class InterpError(Exception):
    """Base class for user-facing errors (bad spec, bad file, wrong model)."""


class SpecError(InterpError, ValueError):
    """A model or prompt spec string that cannot be resolved."""


class PlacementError(SpecError):
    """A ``device_map`` or ``max_memory`` that cannot be used here, or that would offload weights."""


class HookNameError(InterpError, KeyError):
    """A hook name or pattern that the model does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CacheError(InterpError):
    """A cache directory that is missing, incomplete, corrupt or inconsistent."""


class ModelMismatchError(CacheError):
    """A cache, vector or SAE used with a model it did not come from."""


class SAEError(InterpError, ValueError):
    """An SAE directory that is missing or corrupt, or an SAE that does not fit a cache or model."""


class VectorFileError(InterpError, ValueError):
    """A steering-vector directory that is missing, incomplete or corrupt."""


class DamageError(InterpError, ValueError):
    """Two models that cannot be compared, or a scorer that failed (damage localisation)."""


class RemoteCodeError(SpecError):
    """A model or tokenizer folder that asks to run its own code, without the user allowing it."""


class CheckpointError(SpecError):
    """A checkpoint that cannot be loaded safely: pickled, truncated, not a causal LM, or mis-shaped."""


class CommandLineError(InterpError, ValueError):
    """A command-line value that cannot be used: a count out of range, an unusable path."""


class GenerationError(InterpError, ValueError):
    """A decoding setting or input that cannot be used: a sampling parameter, pad id or mask out of range."""


class SelectorError(InterpError, ValueError):
    """A position selector built from unusable values (an empty id set, a negative window, ...)."""


class NonCausalSelectorError(SelectorError):
    """A look-ahead selector used in a pass with a key-value cache, where later tokens do not exist yet."""


class TrackingError(SelectorError):
    """Token history that does not fit the forward pass (tracking began after the prompt pass, ...)."""


class CrosscoderError(SAEError):
    """A crosscoder setting, input or directory that cannot be used."""


class DiffLensError(CacheError, ValueError):
    """Activations that cannot be compared position by position (other rows, hooks or widths), or a
    setting out of range."""
