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


class BudgetExceededError(EdgeRuntimeError):
    """A model or pipeline does not fit the memory budget of its device profile."""

    exit_code = 2


class BundleError(EdgeRuntimeError):
    """A model bundle failed verification (hash, signature, or unsafe archive member)."""
