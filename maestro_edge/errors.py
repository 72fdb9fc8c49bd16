"""Expected failures. The CLI prints ``str(error)`` as one line and exits non-zero.

Every message says what is wrong and what to do about it.
"""


class MaestroError(Exception):
    """Base class for every error a user can cause or fix."""

    exit_code = 1


class UsageError(MaestroError):
    """A flag or argument that cannot work (bad budget, unknown device...)."""

    exit_code = 2


class CheckpointError(MaestroError):
    """A model file that is missing, corrupt, or not a maestro-edge checkpoint."""


class ProfileError(MaestroError):
    """A device profile that is missing or malformed."""


class TableError(MaestroError):
    """A latency table that is corrupt or belongs to another model or device."""


class InfeasibleBudget(MaestroError):
    """No rank plan meets the budget; carries the fastest achievable latency. A usage error (exit 2): the
    budget is the user's input, and the message says the least one that works."""

    exit_code = 2

    def __init__(self, message: str, min_ms: float):
        super().__init__(message)
        self.min_ms = min_ms


class TransportError(MaestroError):
    """A target device that cannot be reached or that failed a command."""


class ExportError(MaestroError):
    """An export that could not be produced or failed verification."""


class DataError(MaestroError):
    """A data set that is not installed or not readable."""
