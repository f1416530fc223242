"""The one structured log format of the webhook and the operator."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from flox_isa.logs import (
    FLUSH_SECONDS,
    BufferedLineHandler,
    JsonFormatter,
    buffered,
    setup_logging,
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
    with path.open("w") as target:
        handler = BufferedLineHandler(buffered(target))
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("flox_isa.test.buffered")
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)

        def written() -> list[str]:
            return [json.loads(x)["message"] for x in path.read_text().splitlines()]

        try:
            logger.info("admitted")
            logger.warning("watch expired")
            assert written() == ["admitted", "watch expired"]  # no wait: flushed at once
            logger.info("admitted again")
            deadline = time.monotonic() + FLUSH_SECONDS * 20
            while written()[-1:] != ["admitted again"] and time.monotonic() < deadline:
                time.sleep(FLUSH_SECONDS / 4)
            assert written() == ["admitted", "watch expired", "admitted again"]
        finally:
            logger.removeHandler(handler)
            handler.close()
