"""What every operations command shares: exit codes, structured errors, progress on stderr.

Standard output carries only the command's data (JSON lines, or the export document), so it
can be piped; progress and errors go to standard error. An error is one JSON object on one
line: `{"error": <code>, "detail": <text>, ...}`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, NoReturn

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# Exit codes scripts can rely on (README "Operations").
OK = 0
REFUSED = 1  # a conflict, an invalid input file, an unknown campaign: retrying will not help
USAGE = 2  # bad arguments (argparse uses 2 as well)
UNAVAILABLE = 3  # Kafka or MongoDB could not be reached: retrying later may help
INTERNAL = 4  # an unexpected error (a bug): the traceback is on stderr


class CommandError(Exception):
    """Ends a command with an exit code and a structured message on stderr."""

    def __init__(self, code: int, error: str, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.exit_code = code
        self.error = error
        self.detail = detail
        self.fields = fields

    def report(self) -> None:
        fail(self.error, self.detail, **self.fields)


def fail(error: str, detail: str, **fields: Any) -> None:
    line = {"error": error, "detail": detail, **fields}
    sys.stderr.write(orjson.dumps(line).decode("utf-8") + "\n")
    sys.stderr.flush()


def unavailable(what: str, error: BaseException) -> NoReturn:
    raise CommandError(UNAVAILABLE, f"{what}_unavailable", f"cannot reach {what}: {error}")


def emit(value: Any) -> None:
    """One JSON object on its own line on stdout."""
    sys.stdout.write(orjson.dumps(value).decode("utf-8") + "\n")


def rfc3339(text: str) -> datetime:
    """argparse type for --since: an RFC 3339 time with a zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from error
    if value.tzinfo is None:
        raise ValueError(f"an RFC 3339 time needs a zone (Z or +hh:mm): {text!r}")
    return value


rfc3339.__name__ = "RFC 3339 time"  # argparse names the type in its error message


def progress() -> Progress:
    """A progress display on stderr (drawn only when stderr is a terminal)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
