"""Errors that mean "the user's input is wrong", each mapped to a documented exit code.

The CLI turns these into one line on stderr and an exit code, never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOTHING_COMPARED = 3  # the run finished, but the baseline (or every cell) failed: no verdict to give


class AblationError(Exception):
    """Base of the errors a user can cause; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_BAD_INPUT


class DatasetError(AblationError):
    """The dataset cannot be read: missing path, unknown format, corrupt image, missing key."""


class GateFailed(AblationError):
    """The data-quality gate found critical problems; training stopped (or never started)."""

    exit_code = EXIT_GATE_FAILED

    def __init__(self, message: str, report_path: str | None = None):
        super().__init__(message)
        self.report_path = report_path


NOT_APPLICABLE = "not applicable"  # the status of a variant the user's model builder takes no option for


class NotApplicable(Exception):
    """A variant that does not apply to the user's model (its builder takes no such option): recorded as "not
    applicable", neither a failure nor a result. Not a user error, so no exit code."""
