"""The one error type the CLI turns into a single red line instead of a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on; ``str(error)`` says what to fix.

    :func:`hpc.cli.main` prints it as one line on stderr and exits with
    :attr:`exit_code`.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
