"""Structured logs for the long-running commands (webhook, operator): JSON lines on stderr.

Each line holds time (UTC, milliseconds), level, logger and message, then the
record's own fields: those passed as `extra={"fields": {...}}` and any other
`extra` keys.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any, Final

from pydantic_core import to_json


class JsonFormatter(logging.Formatter):
    _STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        for key in sorted(attributes.keys() - self._STANDARD):
            value = attributes[key]
            if key == "fields" and isinstance(value, dict):
                entry.update(value)
            else:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return to_json(entry, fallback=str).decode()


# How long a line may wait in the buffer (warnings and errors are written at once).
FLUSH_SECONDS: Final = 0.2
BUFFER_BYTES: Final = 1 << 16


class BufferedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines into a buffer that a daemon thread flushes every FLUSH_SECONDS.

    The webhook writes a line per decision: a write call per line (StreamHandler
    flushes each record) was a tenth of a request's time under load. A WARNING or
    worse is flushed at once; logging's exit hook flushes the rest.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._closed = threading.Event()
        threading.Thread(target=self._flush_every_interval, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except RecursionError:
            raise
        except Exception:  # as logging.StreamHandler: a broken stream must not break the caller
            self.handleError(record)

    def close(self) -> None:
        self._closed.set()
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._closed.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except (OSError, ValueError):  # the stream was closed: nowhere left to write
                return


def buffered(stream: IO[str]) -> IO[str]:
    """`stream` with a block buffer (stderr flushes every line); as is without a file."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a test's in-memory capture
        return stream
    return open(descriptor, "w", buffering=BUFFER_BYTES, encoding="utf-8", closefd=False)


def setup_logging(level: str | int = "INFO", quiet: Iterable[str] = ()) -> None:
    """JSON lines on stderr for every logger; the `quiet` ones only from WARNING up.

    The webhook logs every admission, so a record must be cheap: the lines hold no
    caller, thread or process, so those are not collected (the logging HOWTO's
    "Optimization" switches), and lines are written in blocks (`BufferedLineHandler`).
    """
    logging._srcfile = None  # the documented switch for "no caller lookup"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for old in logging.getLogger().handlers:
        if isinstance(old, BufferedLineHandler):
            old.close()  # flushes what it holds and stops its thread
    handler = BufferedLineHandler(buffered(sys.stderr))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []  # uvicorn's own handlers: through ours
        logging.getLogger(name).propagate = True
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
