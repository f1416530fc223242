"""The one structured log format of the webhook and the operator."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from unittest import mock

import pytest

from flox_isa.logs import (
    FLUSH_SECONDS,
    BufferedLineHandler,
    JsonFormatter,
    SharedFields,
    buffered,
    event,
    setup_logging,
    time_text,
)


def formatted(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "flox_isa.test", "levelno": logging.INFO, "levelname": "INFO",
         "msg": "reconciled %s", "args": ("tw/a",), "created": 1_700_000_000.123, **extra}
    )  # fmt: skip
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_carries_time_in_ms_level_logger_message_and_the_record_fields() -> None:
    line = formatted(fields={"uid": "u1", "variant": "avx2"}, ticketworker="ns/a")
    assert line == {
        "time": "2023-11-14T22:13:20.123+00:00",
        "level": "info",
        "logger": "flox_isa.test",
        "message": "reconciled tw/a",
        "uid": "u1",
        "variant": "avx2",
        "ticketworker": "ns/a",
    }


def test_an_exception_is_kept_as_text() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys  # noqa: PLC0415

        line = formatted(exc_info=sys.exc_info())
    assert "ValueError: bad" in str(line["error"])


def test_setup_routes_everything_through_one_handler_and_quiets_chatty_loggers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", quiet=["chatty"])
        logging.getLogger("chatty").info("per-object noise")
        logging.getLogger("uvicorn.error").info("started")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("chatty").setLevel(logging.NOTSET)
    assert [x["message"] for x in lines] == ["started"]


def test_lines_are_written_in_order_warnings_at_once_the_rest_within_the_interval(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stderr"

    def written() -> list[str]:
        return [json.loads(x)["message"] for x in path.read_text().splitlines()]

    with (
        path.open("w") as target,
        own_logger("flox_isa.test.buffered", buffered(target)) as (
            logger,
            _,
        ),
    ):
        logger.info("admitted")
        logger.warning("watch expired")
        assert written() == ["admitted", "watch expired"]  # no wait: flushed at once
        logger.info("admitted again")
        deadline = time.monotonic() + FLUSH_SECONDS * 20
        while written()[-1:] != ["admitted again"] and time.monotonic() < deadline:
            time.sleep(FLUSH_SECONDS / 4)
        assert written() == ["admitted", "watch expired", "admitted again"]


def test_records_and_events_reach_a_file_in_order_as_utf8_lines(tmp_path: Path) -> None:
    # `buffered` gives the handler the file as bytes: events go in as made, records encoded.
    path = tmp_path / "stderr"
    with path.open("w") as target:
        target.write("before\n")  # what the stream held goes first
        with own_logger("flox_isa.test.binary", buffered(target)) as (logger, _):
            logger.info(ODD_TEXT)
            event(logger, logging.INFO, ODD_TEXT, {"uid": "u1"})
            event(logger, logging.WARNING, "at once", {})  # flushes all three
            first, *lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert first == "before"
    assert [json.loads(line)["message"] for line in lines] == [ODD_TEXT, ODD_TEXT, "at once"]


@pytest.mark.parametrize(
    "created",
    [1_700_000_000.123, 1_700_000_000.0, 1_700_000_000.9995, 1_700_000_059.9999996, 0.0004,
     1_699_999_999.5, -1.5, 1_700_000_000.1234565],
)  # fmt: skip
def test_time_text_says_what_datetime_says(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert time_text(created) == expected
    assert time_text(created) == expected  # the second remembered


@contextlib.contextmanager
def own_logger(
    name: str, stream: IO[str] | IO[bytes]
) -> Iterator[tuple[logging.Logger, BufferedLineHandler]]:
    """Logger `name` with one BufferedLineHandler of its own (as setup_logging's) on
    `stream`, not propagating; removed afterwards."""
    handler = BufferedLineHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True  # else pytest gives it capture handlers of its own
        handler.close()


@contextlib.contextmanager
def own_handler(name: str) -> Iterator[tuple[logging.Logger, BufferedLineHandler, io.StringIO]]:
    """`own_logger` on a StringIO."""
    stream = io.StringIO()
    with own_logger(name, stream) as (logger, handler):
        yield logger, handler, stream


def _line_of_event(
    level: int,
    message: str,
    fields: dict[str, object],
    at: float,
    shared: dict[str, object] | None = None,
) -> tuple[str, str]:
    """(the line `event` writes, the line the formatter makes of the same record)."""
    with own_handler("flox_isa.test.event") as (logger, _, stream):
        no_record = mock.patch.object(logger, "makeRecord", side_effect=AssertionError)
        with mock.patch("flox_isa.logs.time.time", return_value=at), no_record:
            once = SharedFields.of(shared) if shared is not None else None
            event(logger, level, message, fields, once)  # the line made without a record
    record = logging.makeLogRecord(
        {"name": logger.name, "levelno": level, "levelname": logging.getLevelName(level),
         "msg": message, "created": at, "fields": {**fields, **(shared or {})}}
    )  # fmt: skip
    return stream.getvalue(), JsonFormatter().format(record) + "\n"


ODD_TEXT = "".join(map(chr, range(128))) + "é ü 漢字 \u2028 \u2029 \U0001f600 \ufeff"


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING])
def test_an_event_is_the_line_its_record_would_be(level: int) -> None:
    fields: dict[str, object] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "namespace": "tickets",
        "dryRun": False,
        "variant": None,
        "message": ODD_TEXT,  # replaces the message, keeping its place (as the formatter)
        "warnings": ["flox-isa: no eligible node", ODD_TEXT],
        "count": 3,
    }
    written, formatted = _line_of_event(level, "patched", fields, 1_700_000_000.123)
    assert written == formatted
    assert json.loads(written)["message"] == ODD_TEXT


@pytest.mark.parametrize(
    ("fields", "shared"),
    [
        ({"uid": "u1", "pod": ODD_TEXT}, {"message": ODD_TEXT, "variant": None, "n": [1]}),
        ({"uid": "u1", "message": "own"}, {"outcome": "patched"}),  # the line's own message
        ({}, {"message": "m"}),
        ({"uid": "u1"}, {}),
    ],
)
def test_an_event_with_shared_fields_is_the_line_its_record_would_be(
    fields: dict[str, object], shared: dict[str, object]
) -> None:
    for level in (logging.INFO, logging.WARNING):
        written, formatted = _line_of_event(level, "patched", fields, 1_700_000_000.5, shared)
        assert written == formatted


def test_an_event_goes_through_logging_where_something_else_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("flox_isa.test.captured")
    with caplog.at_level(logging.INFO, logger=logger.name):
        event(logger, logging.INFO, "patched", {"uid": "u1"})
        event(logger, logging.DEBUG, "patched", {"uid": "u2"})  # below the level: nothing
    assert [(r.getMessage(), r.fields) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("patched", {"uid": "u1"})
    ]


def test_an_event_respects_the_handlers_level_and_filters() -> None:
    with own_handler("flox_isa.test.levels") as (logger, handler, stream):
        handler.setLevel(logging.INFO)
        event(logger, logging.DEBUG, "below the handler", {})
        handler.addFilter(lambda record: record.getMessage() != "filtered out")
        event(logger, logging.INFO, "filtered out", {})
        event(logger, logging.INFO, "kept", {})
    assert [json.loads(x)["message"] for x in stream.getvalue().splitlines()] == ["kept"]


def test_an_event_on_a_broken_stream_is_reported_with_all_its_fields_not_raised() -> None:
    with own_handler("flox_isa.test.broken") as (logger, handler, stream):
        stream.close()  # writing now raises ValueError
        reported: list[logging.LogRecord] = []
        with mock.patch.object(handler, "handleError", side_effect=reported.append):
            event(logger, logging.INFO, "patched", {"uid": "u1"}, SharedFields.of({"n": 1}))
    assert [r.fields for r in reported] == [{"uid": "u1", "n": 1}]  # type: ignore[attr-defined]
