"""User-facing errors: each message names the file/field/value at fault and says the fix.

Entry points catch :class:`JarvisBenchError`, print its one-line message and exit with
its ``exit_code``; no traceback is shown for a user mistake (``--debug`` shows it).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_GATE = 4  # --fail-below / --fail-on-regression: the run worked, the fine-tune did not pass
EXIT_INTERRUPTED = 130


class JarvisBenchError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    exit_code = EXIT_RUNTIME


class ConfigError(JarvisBenchError):
    """The config file or a CLI override is invalid."""

    exit_code = EXIT_USAGE


class AdapterError(JarvisBenchError):
    """A LoRA adapter folder is missing, malformed, or does not fit the base model."""

    exit_code = EXIT_USAGE


class BackendUnavailable(JarvisBenchError):
    """A backend's optional dependency or hardware is missing."""

    exit_code = EXIT_USAGE


class ModelLoadError(JarvisBenchError):
    """The base model or an adapter could not be loaded."""

    exit_code = EXIT_RUNTIME


class OutputWriteError(JarvisBenchError):
    """A results, report or chart file could not be written (disk full, permission, path too long); the
    previous file is unchanged and no temporary file is left."""

    exit_code = EXIT_RUNTIME


class RunTimeout(JarvisBenchError):
    """The whole-run timeout (generation.timeout_s) was reached; finished answers are kept."""

    exit_code = EXIT_RUNTIME
