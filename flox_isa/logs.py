"""Structured logs for the long-running commands (webhook, operator): JSON lines on stderr.

Each line holds time (UTC, milliseconds), level, logger and message, then the
record's own fields: those passed as `extra={"fields": {...}}` and any other
`extra` keys. `event` writes such a line without a LogRecord (the webhook's line
per decision).
"""

from __future__ import annotations

import io
import logging
import math
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final

import msgspec
from pydantic_core import to_json

# `event`'s lines: compact, UTF-8, keys in insertion order; what JSON has no type for as
# its text (as the formatter's fallback).
_EVENT_ENCODER: Final = msgspec.json.Encoder(enc_hook=str)
# `time_text`'s endings, made once (formatting one cost a line ~1 us).
_MILLISECONDS: Final = tuple(f".{milli:03d}+00:00" for milli in range(1000))
# The last whole second `time_text` wrote, and its text.
_second: tuple[float, str] = (math.nan, "")


def time_text(created: float) -> str:
    """`created` (a Unix time) as `datetime.fromtimestamp(created, UTC).isoformat(
    timespec="milliseconds")` says it, e.g. 2023-11-14T22:13:20.123+00:00, with the text
    of the date and the second made once per second."""
    global _second  # noqa: PLW0603 - a one-entry cache; a race only makes it again
    fraction, whole = math.modf(created)
    micros = round(fraction * 1e6)  # rounded half to even, as datetime does
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    if micros < 0:  # before 1970
        whole, micros = whole - 1, micros + 1_000_000
    second, text = _second
    if second != whole:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return text + _MILLISECONDS[micros // 1000]


class JsonFormatter(logging.Formatter):
    _STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time_text(record.created),
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
    worse is flushed at once; logging's exit hook flushes the rest. The stream is a
    binary one (`buffered`: lines go in as UTF-8 bytes, as `event` makes them) or text.
    """

    def __init__(self, stream: IO[str] | IO[bytes]) -> None:
        super().__init__(stream)
        self._binary = isinstance(stream, io.BufferedIOBase)
        self._stopped = threading.Event()
        threading.Thread(target=self._flush_every_interval, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            self.stream.write(line.encode() if self._binary else line)
            if record.levelno >= logging.WARNING:
                self.flush()
        except RecursionError:
            raise
        except Exception:  # as logging.StreamHandler: a broken stream must not break the caller
            self.handleError(record)

    def write_line(self, line: bytes, level: int) -> None:
        """`line` (a formatted record, UTF-8, with its newline) as `emit` writes it, under
        the handler's lock."""
        with self.lock:  # type: ignore[union-attr]  # created in Handler.__init__
            self.stream.write(line if self._binary else line.decode())
            if level >= logging.WARNING:
                self.flush()

    def close(self) -> None:
        self._stopped.set()
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._stopped.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except (OSError, ValueError):  # the stream was closed: nowhere left to write
                return


class SharedFields(msgspec.Struct, frozen=True, gc=False):
    """Fields that many lines repeat (all the lines of one decision), encoded once.

    `event` writes them after its own `fields` (which must not hold the same keys); a
    `message` among them replaces the line's message, in its place, as in `fields`.
    Only their JSON is kept: nothing for the garbage collector to track (the webhook
    keeps one per remembered answer).
    """

    message: bytes | None  # its JSON, if one is given
    rest: bytes  # the other fields' JSON object without its braces

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> SharedFields:
        rest = {k: v for k, v in fields.items() if k != "message"}
        message = _EVENT_ENCODER.encode(fields["message"]) if "message" in fields else None
        return cls(message, _EVENT_ENCODER.encode(rest)[1:-1])

    @property
    def fields(self) -> dict[str, Any]:
        """The fields as values again (for a record, when the line is not made here)."""
        decoded: dict[str, Any] = msgspec.json.decode(b"{%s}" % self.rest)
        if self.message is not None:
            decoded["message"] = msgspec.json.decode(self.message)
        return decoded


# (logger name, level) -> the line's bytes from after the time to the message's value.
_LINE_MIDDLES: dict[tuple[str, int], bytes] = {}


def event(
    logger: logging.Logger,
    level: int,
    message: str,
    fields: Mapping[str, Any],
    shared: SharedFields | None = None,
) -> None:
    """`logger.log(level, message, extra={"fields": {**fields, **shared.fields}})`, cheaply.

    The webhook logs a line per decision. When that line can only reach the one handler
    `setup_logging` installs (no other handler or filter on the way, the handler's own
    formatter), it is made here: the same line `JsonFormatter` makes of the record (tests
    compare them) but with no LogRecord, filters or formatter call, and with `shared`
    encoded once for all its lines: about a tenth of the cost. Otherwise (a test's log
    capture, a handler added by hand) the record goes through `logging` as usual.
    `fields` hold JSON values (str, int, bool, None, lists).
    """
    if not logger.isEnabledFor(level):
        return
    handler = _only_handler(logger, level)
    if handler is None:
        logger.log(level, message, extra={"fields": _all_fields(fields, shared)})
        return
    try:
        handler.write_line(_event_line(logger.name, level, message, fields, shared), level)
    except RecursionError:
        raise
    except Exception:  # as `emit`: a broken stream must not break the caller
        record = logger.makeRecord(logger.name, level, "", 0, message, (), None)
        record.fields = _all_fields(fields, shared)
        handler.handleError(record)


def _all_fields(fields: Mapping[str, Any], shared: SharedFields | None) -> dict[str, Any]:
    return {**fields, **shared.fields} if shared is not None else dict(fields)


def _event_line(
    name: str, level: int, message: str, fields: Mapping[str, Any], shared: SharedFields | None
) -> bytes:
    middle = _LINE_MIDDLES.get((name, level))
    if middle is None:
        head = {"level": logging.getLevelName(level).lower(), "logger": name}
        middle = b'",' + _EVENT_ENCODER.encode(head)[1:-1] + b',"message":'
        _LINE_MIDDLES[(name, level)] = middle
    if "message" in fields:
        fields = dict(fields)
        said = _EVENT_ENCODER.encode(fields.pop("message"))
    elif shared is not None and shared.message is not None:
        said = shared.message
    else:
        said = _EVENT_ENCODER.encode(message)
    parts = [b'{"time":"', time_text(time.time()).encode(), middle, said]
    if fields:
        parts += (b",", _EVENT_ENCODER.encode(fields)[1:-1])
    if shared is not None and shared.rest:
        parts += (b",", shared.rest)
    parts.append(b"}\n")
    return b"".join(parts)


def _only_handler(logger: logging.Logger, level: int) -> BufferedLineHandler | None:
    """The handler a record of `logger` at `level` reaches, when it is the only one, one
    of ours with our formatter, and no filter is on the way; else None."""
    found: BufferedLineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BufferedLineHandler
                or type(handler.formatter) is not JsonFormatter
                or handler.filters
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if found is None or level < found.level:
        return None
    return found


def buffered(stream: IO[str]) -> IO[str] | IO[bytes]:
    """`stream`'s file as a binary stream with a block buffer (stderr flushes every line);
    the stream as is without a file."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a test's in-memory capture
        return stream
    stream.flush()  # what it holds goes first
    return open(descriptor, "wb", buffering=BUFFER_BYTES, closefd=False)


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
