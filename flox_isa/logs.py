"""Structured logs for the long-running commands (webhook, operator): JSON lines on stderr.

Each line holds time (UTC, milliseconds), level, logger and message, then the
record's own fields: those passed as `extra={"fields": {...}}` and any other
`extra` keys.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final


class JsonFormatter(logging.Formatter):
    _STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key == "fields" and isinstance(value, dict):
                entry.update(value)
            elif key not in self._STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str | int = "INFO", quiet: Iterable[str] = ()) -> None:
    """JSON lines on stderr for every logger; the `quiet` ones only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []  # uvicorn's own handlers: through ours
        logging.getLogger(name).propagate = True
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
