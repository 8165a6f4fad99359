"""The error types the CLI turns into a single red line instead of a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on; ``str(error)`` says what to fix.

    :func:`hpc.cli.main` prints it as one line on stderr and exits with
    :attr:`exit_code`.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InvalidInput(CliError):
    """Input the client refuses before sending anything (exit 2, as for a bad option).

    Not an :class:`hpc.client_http.ApiError`: no request was made, so callers that retry
    an unreachable control plane (status 0) or look at an HTTP status must not catch it.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message, exit_code=exit_code)
