"""One error type for bad input: it names the file, line and key, and what is allowed."""

from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """Bad configuration, usage or input file; printed as one line, exit code 2."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, allowed: str | None = None):
        self.file, self.line, self.key, self.allowed = file, line, key, allowed
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        """Format as `file:line: key: message (allowed: ...)`."""
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        allowed = f" (allowed: {self.allowed})" if self.allowed else ""
        return f"{where}{key}{self.message}{allowed}"
