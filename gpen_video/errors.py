"""User-facing errors.

Every error a user can cause (a bad file, a bad option, a missing model) is a ``GpenVideoError``.
The CLI prints ``str(error)`` as one line and exits with ``exit_code``; anything else is a bug and
gets a traceback. Messages say what is wrong *and* what to do about it.
"""

from __future__ import annotations


class GpenVideoError(Exception):
    """Base of every error the CLI reports as a one-line message."""

    exit_code: int = 2


class ConfigError(GpenVideoError):
    """A bad option value, preset or config file."""


class InputError(GpenVideoError):
    """The input is missing, unreadable, not a video, or damaged beyond use."""


class DamagedInputError(InputError):
    """Packets could not be decoded and ``--strict`` was given."""


class OutputError(GpenVideoError):
    """The output path cannot be used (exists, equals the input, unwritable folder)."""


class VerificationError(GpenVideoError):
    """The written output does not match the input's frames or timestamps; it was not kept."""


class ModelError(GpenVideoError):
    """A model file is not a usable restorer (wrong network, truncated, unsafe)."""


class WeightsNotFoundError(ModelError):
    """A named model's file is not on this machine."""


class FetchError(ModelError):
    """A model download failed or did not match its checksum."""


class DependencyError(GpenVideoError):
    """An optional dependency (extra or external binary) is needed but absent."""


class ClusterError(GpenVideoError):
    """The Ray cluster cannot be reached, or refused this driver (its authentication token)."""
