"""Exception types shared by the whole toolkit.

Every error a user can cause (bad file, bad input, bad config) is one of these,
with a message that names the problem. The command-line tools print the message
and exit non-zero; they never dump a traceback for these.
"""
from __future__ import annotations


class EdgeRuntimeError(Exception):
    """Base class of every error raised on purpose by edge-runtime."""

    exit_code: int = 1


class ModelFormatError(EdgeRuntimeError):
    """A model file is missing, truncated, corrupt, or not the format it claims."""


class UnsupportedModelError(EdgeRuntimeError):
    """A model is well formed but uses something a backend cannot run (op, version, type)."""


class InputError(EdgeRuntimeError):
    """Input given to a model has the wrong name, shape or dtype."""


class ConfigError(EdgeRuntimeError):
    """A configuration or profile file is invalid."""


class BackendUnavailableError(EdgeRuntimeError):
    """The requested backend's library is not installed on this machine."""


class AcceleratorUnavailableError(EdgeRuntimeError):
    """An accelerator was required but could not be used."""


#: Exit codes of both command-line tools.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DOES_NOT_FIT = 0, 1, 2, 3
EXIT_CODES_HELP = ("exit codes: 0 success; 1 error (bad model, input, config...); 2 usage (bad command line); "
                   "3 does not fit the profile, or the quality target is not met")


class BudgetExceededError(EdgeRuntimeError):
    """A model or pipeline does not fit the memory budget of its device profile (or misses a quality target)."""

    exit_code = EXIT_DOES_NOT_FIT


class BundleError(EdgeRuntimeError):
    """A model bundle failed verification (hash, signature, or unsafe archive member)."""


class OutOfMemoryError(EdgeRuntimeError):
    """The process ran out of memory (address space or RAM) while starting or running."""


_OOM_MARKERS = ("failed to map segment", "cannot allocate memory", "out of memory", "std::bad_alloc",
                "can't start new thread", "unable to allocate", "mmap failed")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) is a memory shortage rather than a real bug or missing package."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, MemoryError):
            return True
        if isinstance(exc, OSError) and exc.errno == 12:  # ENOMEM
            return True
        text = str(exc).lower()
        if isinstance(exc, (ImportError, OSError, RuntimeError)) and any(m in text for m in _OOM_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def out_of_memory_message(exc: BaseException) -> str:
    """One line explaining a memory shortage, naming the usual limits to check."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"out of memory ({detail[:160]}); the process needs more memory than its limit allows: "
            "check ulimit -v, the cgroup's memory.max, or the device profile's inference RAM budget")
